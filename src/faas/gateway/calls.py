"""One call, whichever front door it came through (``/functions/{id}/invoke``, ``/function/{id}``).

``find_deployed`` resolves an id (and an optional ``?version=``) to a stored
version, or None for an id that is not deployed. ``run_call`` runs the
invocation through the orchestrator (with the deployed function's bundle
and its own concurrency gate), cancels it if the client goes away, and
counts it: per function in ``/metrics`` (the deployed id, or ``adhoc``) and,
for a deployed version, in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from faas.errors import FaasError, InvocationCancelled, NotFound, ValidationError
from faas.functions import Functions, outcome_of
from faas.gateway.context import Gateway
from faas.invocations.live import LiveCall
from faas.metrics import ADHOC, Metrics
from faas.models import FunctionBundle, InvocationResult, InvokeRequest
from faas.orchestrator import Admission
from faas.store import FunctionVersion
from faas.store.invocation_records import now_us
from faas.store.records import MAX_VERSION, STORED_FUNCTION_ID_PATTERN

log = logging.getLogger("faas.gateway")


def pinned_version(request: Request) -> int | None:
    """``?version=N`` (1..2^31-1), or None; 400 if malformed."""
    raw = request.query_params.get("version")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 10 or not 1 <= int(raw) <= MAX_VERSION:
        raise ValidationError(f"version must be an integer from 1 to {MAX_VERSION}")
    return int(raw)


async def find_deployed(gateway: Gateway, function_id: str,
                        version: int | None) -> FunctionVersion | None:
    """The version to run, None if ``function_id`` is not deployed; ``NotFound`` for a
    pinned version that does not exist (or a pin on an id that is not deployed)."""
    functions = gateway.functions
    if functions is None or not STORED_FUNCTION_ID_PATTERN.fullmatch(function_id):
        if version is not None:
            raise NotFound("function not deployed")
        return None
    if version is not None:
        try:
            return await functions.store.get_version(function_id, version)
        except NotFound:
            raise NotFound(f"function {function_id} has no version {version}") from None
    known, latest = functions.recent.get(function_id)
    if not known:
        try:
            latest = (await functions.store.get_function(function_id)).latest
        except NotFound:
            latest = None
        functions.recent.put(function_id, latest)
    return latest


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_call(request: Request, gateway: Gateway, function_id: str,
                   invoke_request: InvokeRequest, request_id: str,
                   deployed: FunctionVersion | None,
                   headers: dict[str, str] | None = None,
                   caller: str | None = None) -> InvocationResult | None:
    """The result, or None if the client went away (the invocation was cancelled).

    Raises the orchestrator's ``FaasError``s (``InvocationTimeout``...), and
    ``InvocationCancelled`` when a DELETE of the invocation cancelled it. When
    records are kept, the call is one (written once it ends) and its id is
    put in ``headers`` as ``x-invocation-id``.
    """
    records = gateway.invocations if gateway.settings.invocations.record_sync else None
    accepted_at = now_us()
    live: LiveCall | None = None
    result: InvocationResult | None = None
    failure: FaasError | None = None

    def started(work: asyncio.Future[Any]) -> None:
        nonlocal live
        if records is not None:
            live = records.sync_started(function_id, deployed, request_id, accepted_at, work,
                                        caller)
            if headers is not None:
                headers["x-invocation-id"] = live.record.id

    try:
        result = await _run(request, gateway, function_id, invoke_request, request_id,
                            deployed, started)
        return result
    except FaasError as exc:
        failure = exc
        raise
    finally:
        if live is not None and records is not None:
            records.sync_ended(live, result, failure)


async def _with_secrets(gateway: Gateway, function_id: str, invoke_request: InvokeRequest,
                        request_id: str, bundle: FunctionBundle | None, gate: Admission | None,
                        names: tuple[str, ...]) -> InvocationResult:
    """Run the call with the values of the secrets its function lists (read now, from the
    tenant's secrets: a secret set or changed since the deploy is the one the call gets)."""
    secrets = await gateway.call_secrets(function_id, names) if names else ()
    return await gateway.orchestrator.invoke(function_id, invoke_request, request_id,
                                             bundle=bundle, gate=gate, secrets=secrets)


async def _run(request: Request, gateway: Gateway, function_id: str,
               invoke_request: InvokeRequest, request_id: str,
               deployed: FunctionVersion | None,
               started: Callable[[asyncio.Future[Any]], None]) -> InvocationResult | None:
    functions = gateway.functions if deployed is not None else None
    spec = deployed.spec if deployed is not None else None
    bundle = functions.bundle_of(spec) if functions is not None and spec is not None else None
    outcome = "cancelled"
    gates = functions.gates.gate(function_id, spec.max_concurrency) \
        if functions is not None and spec is not None else contextlib.nullcontext(None)
    try:
        with gates as gate:
            work = asyncio.ensure_future(_with_secrets(
                gateway, function_id, invoke_request, request_id, bundle, gate,
                spec.secrets if spec is not None else ()))
            del invoke_request
            started(work)
            watch = asyncio.ensure_future(_wait_disconnect(request))
            try:
                await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
                client_gone = watch.done()
            finally:
                watch.cancel()
                if not work.done():
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError, FaasError):
                        await work
        if work.cancelled():
            if not client_gone:
                # Not the client: a DELETE of the invocation cancelled it.
                outcome = "cancelled"
                raise InvocationCancelled("the invocation was cancelled")
            log.info("client disconnected; the invocation was cancelled")
            return None
        try:
            result = work.result()
        except FaasError as exc:
            outcome = outcome_of(exc)
            raise
        outcome = outcome_of(None, result.error)
        return result
    finally:
        _record(gateway.orchestrator.metrics, functions, function_id, deployed, outcome)


def _record(metrics: Metrics, functions: Functions | None, function_id: str,
            deployed: FunctionVersion | None, outcome: str) -> None:
    """Count a call: a deployed version under its own id (and in the store), any other
    under ``adhoc`` (never the id the caller chose)."""
    if functions is None or deployed is None:
        metrics.function_invocations.labels(ADHOC, outcome).inc()
    else:
        functions.record(function_id, deployed.version, outcome)
