"""``POST /functions/{function_id}/invoke``: run a command in a fresh sandbox (the hot path).

Status codes: 200 when the command ran (``error`` set if it exited non-zero
or could not start), 400 malformed request (or memory, vCPUs or timeout over
the tenant's per-call quota), 404 missing image, 408 body sent
too slowly, 413 body or payload too large, 429 + Retry-After when admission
(or the body memory budget) is full or the tenant is over its rate,
concurrency or queued-calls quota (``faas.tenancy.enforcement``: checked
before the body is read), 503 shutting down or executor
unavailable, 504 timeout (with the partial output), 500/502 platform
failure. A 500/502 says only that the platform failed and gives the request
id: its details (host paths, daemon messages) go to the log, never to the
caller.

Asynchronous (``Prefer: respond-async`` or ``?async=true``): the same checks,
then the call is queued durably and answered 202 with its invocation id
(``faas.gateway.async_call``, ``faas.invocations``). A sync call's record id
is in ``X-Invocation-Id``.

A deployed function (``faas.store``; ``?version=N`` pins one) runs its stored
command with the caller's payload, environment and lower limits
(``faas.functions.deployed``); any other id runs the body's ad hoc command,
unless ``FAAS_ALLOW_ADHOC=0`` (then 404).

The handler reads its own parameters and body (``faas.gateway.body``, under
the memory budget and deadlines): a ``RawRoute``, whose parameters and
request model are declared for the document only.
``X-Request-Id`` is taken from the request when well-formed, otherwise
generated; it is echoed in the response and attached to every log line of
the invocation. If the client disconnects, the invocation is cancelled and
its sandbox destroyed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query
from starlette.requests import Request
from starlette.responses import Response

from faas.errors import (
    FaasError,
    Forbidden,
    InvocationTimeout,
    NotFound,
    ValidationError,
)
from faas.functions import deployed_request
from faas.gateway.async_call import accepted, async_options, wants_async
from faas.gateway.auth import current_principal
from faas.gateway.body import (
    ClientGone,
    declared_length,
    parse_cost,
    parse_json,
    read_body,
    validate_invoke,
)
from faas.gateway.calls import find_deployed, pinned_version, run_call
from faas.gateway.context import Gateway
from faas.gateway.raw_route import RawRoute
from faas.gateway.responses import OrjsonResponse, error_response, failure_response
from faas.gateway.schemas import Accepted, ErrorBody, InvokeResult, TimedOut
from faas.logs import request_id_var
from faas.models import InvokeRequest
from faas.store.records import MAX_VERSION
from faas.tenancy.principal import Role, qualify

log = logging.getLogger("faas.gateway")

#: What a function id and a request id may be (checked in full: no trailing newline).
NAME = r"[A-Za-z0-9._-]{1,128}"
_REQUEST_ID = re.compile(NAME)
_FUNCTION_ID = re.compile(NAME)

FunctionId = Annotated[str, Path(
    description="1-128 of [A-Za-z0-9._-]", json_schema_extra={"pattern": f"^{NAME}$"})]
Version = Annotated[int | None, Query(
    ge=1, le=MAX_VERSION, description="a deployed function's version to run (404 if none); "
    "default: the latest")]
RequestId = Annotated[str, Header(
    alias="X-Request-Id",
    description=f"echoed back; one not matching {NAME} is replaced by a generated one")]


def _error(why: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": why}


RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": Accepted, "description": "asynchronous (Prefer: respond-async or "
          "?async=true): queued; Location names its record", "headers": {
              "Location": {"description": "/invocations/{id}", "schema": {"type": "string"}}}},
    400: _error("malformed request"),
    409: _error("cancelled by a DELETE of its invocation while the caller waited"),
    404: _error("image not found; function not deployed (FAAS_ALLOW_ADHOC=0) or no such "
                "version"),
    408: _error("request body not received within the read timeout"),
    413: _error("body or payload too large"),
    429: {**_error("admission or body memory full, or the tenant over its rate, "
                   "concurrency or queued-calls quota"),
          "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}},
    500: _error("platform failure (request id only; details in the operator's log)"),
    502: _error("the sandbox's agent failed (request id only)"),
    503: _error("shutting down, or the executor is unavailable"),
    504: {"model": TimedOut, "description": "deadline passed: partial output"},
}


def request_schema(gateway: Gateway) -> dict[str, Any]:
    """``InvokeRequest``'s schema with this server's own limits (its settings, its tiers)."""
    schema = InvokeRequest.model_json_schema()
    props, s = schema["properties"], gateway.settings
    orch = gateway.orchestrator
    _bound(props["timeout_s"], maximum=s.max_timeout_s)
    _bound(props["memory_mb"], maximum=s.max_memory_mb)
    _bound(props["vcpus"], maximum=s.max_vcpus)
    _bound(props["executor"], enum=sorted({*orch.executors, *orch.unavailable}))
    _bound(props["payload"], maxItems=s.max_payload_bytes,
           maxLength=4 * -(-s.max_payload_bytes // 3))
    props["payload"]["description"] += f"; at most {s.max_payload_bytes} bytes (413)"
    return schema


def _bound(prop: dict[str, Any], **limits: Any) -> None:
    """Tighten each non-null branch of ``prop`` by ``limits`` (never loosen a bound)."""
    for branch in prop.get("anyOf", [prop]):
        kind = branch.get("type")
        for key, value in limits.items():
            applies = {"maxItems": "array", "maxLength": "string", "enum": "string"}.get(key)
            if kind == "null" or (applies and kind != applies):
                continue
            if key.startswith("max") and key in branch:
                value = min(value, branch[key])
            branch[key] = value


Prefer = Annotated[str, Header(
    alias="Prefer", description='"respond-async": queue the call and answer 202 at once')]
AsyncFlag = Annotated[bool | None, Query(
    alias="async", description="true: the same as Prefer: respond-async")]
CallbackUrl = Annotated[str | None, Header(
    alias="X-Callback-Url", max_length=2048, description=(
        "async only: POST the record there when the call ends (http/https; private, "
        "loopback and link-local targets refused unless the operator allows them)"))]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", description="async only: the same key within 24 h answers the "
    "first call's id and never runs twice", json_schema_extra={
        "pattern": "^[A-Za-z0-9._:-]{1,128}$"})]


def parameters(function_id: FunctionId, x_request_id: RequestId = "",
               version: Version = None, prefer: Prefer = "", is_async: AsyncFlag = None,
               x_callback_url: CallbackUrl = None,
               idempotency_key: IdempotencyKey = None) -> None:
    """The route's parameters, declared for the document; ``invoke`` reads and checks them."""


def add_routes(api: APIRouter, gateway: Gateway) -> None:
    settings, budget = gateway.settings, gateway.budget

    async def invoke(request: Request) -> Response:
        raw_id = request.headers.get("x-request-id", "")
        request_id = raw_id if _REQUEST_ID.fullmatch(raw_id) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        encoding = "text"
        reservation = None
        held = contextlib.AsyncExitStack()  # the tenant's concurrency slot, for a sync call
        try:
            function_id = request.path_params["function_id"]
            if not _FUNCTION_ID.fullmatch(function_id):
                raise ValidationError("function_id must be 1-128 of [A-Za-z0-9._-]")
            caller = current_principal()
            function_id = qualify(caller.tenant, function_id)
            is_async = wants_async(request)
            # Tenant quotas, before the store and the body: an async call takes a rate
            # token (its queued count is bounded at enqueue); a sync call holds a slot too.
            quotas = gateway.tenant_quotas()
            quota = await (quotas.take_token(caller) if is_async
                           else held.enter_async_context(quotas.admit(caller)))
            deployed = await find_deployed(gateway, function_id, pinned_version(request))
            if deployed is None and not settings.allow_adhoc:
                raise NotFound("function not deployed")
            if deployed is None and not caller.may(Role.DEVELOPER):
                # An invoker calls what its tenant deployed; running code of its own choosing
                # is a developer's (Lambda's Invoke vs CreateFunction).
                raise Forbidden("an ad hoc command needs the developer role; this key may call "
                                "the tenant's deployed functions")
            options = await async_options(request, is_async, settings)
            loop = asyncio.get_running_loop()
            length = declared_length(request, settings.max_body_bytes)
            reservation = await budget.reserve(
                parse_cost(settings.max_body_bytes if length is None else length),
                loop.time() + settings.http_read_timeout_s)
            body = await read_body(request, settings.max_body_bytes,
                                   settings.http_read_timeout_s)
            # Free each stage before the next: body, then the parsed strings;
            # only the decoded payload stays.
            if deployed is None:
                data = parse_json(body)
                del body
                invoke_request = validate_invoke(data)
            else:
                data = parse_json(body) if body.strip() else {}
                del body
                invoke_request = deployed_request(deployed.spec, data, settings)
            del data
            reservation.shrink(len(invoke_request.payload))
            encoding = invoke_request.output_encoding
            await quotas.check_request(caller, invoke_request)
            if is_async:
                gateway.orchestrator.check(function_id, invoke_request)
                invocation_id, created = await gateway.records().accept(
                    function_id, invoke_request, request_id, deployed,
                    callback_url=options.callback_url, idempotency_key=options.idempotency_key,
                    caller=caller.key_id, tenant_max_queued=quota.max_queued)
                status = "queued" if created else (
                    await gateway.records().get(invocation_id)).status
                return accepted(invocation_id, request_id, status, replayed=not created)
            headers = {"x-request-id": request_id}
            result = await run_call(request, gateway, function_id, invoke_request, request_id,
                                    deployed, headers, caller=caller.key_id)
            del invoke_request
            if result is None:
                return Response(status_code=499)
            return OrjsonResponse(result.to_json(encoding), headers=headers)
        except ClientGone:
            log.debug("client disconnected while sending its request")
            return Response(status_code=499)
        except InvocationTimeout as exc:
            extra = exc.result.to_json(encoding)
            extra["request_id"] = request_id
            return error_response(504, str(exc), request_id, extra=extra)
        except FaasError as exc:
            return failure_response(exc, request_id)
        finally:
            if reservation is not None:
                reservation.release()
            await held.aclose()
            request_id_var.reset(token)

    api.add_api_route(
        "/functions/{function_id}/invoke", invoke, methods=["POST"],
        route_class_override=RawRoute, dependencies=[Depends(parameters)], tags=["invocations"],
        summary="Run a command in a fresh sandbox", response_model=InvokeResult,
        response_description="the command ran", responses=RESPONSES, openapi_extra={
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": request_schema(gateway)}}}})
