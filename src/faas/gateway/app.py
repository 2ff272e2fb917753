"""The HTTP gateway (the seed's faas-gateway), a Starlette app.

Routes::

    POST /functions/{function_id}/invoke   run a command (body: InvokeRequest)
    GET  /healthz                          the process answers
    GET  /readyz                           accepting work and the default executor exists
    GET  /metrics                          Prometheus text format
    GET  /openapi.json                     the API description

Status codes of an invoke: 200 when the command ran (``error`` set if it
exited non-zero or could not start), 400 malformed request, 404 missing image,
408 body sent too slowly, 413 body or payload too large, 429 + Retry-After
when admission (or the body memory budget) is full, 503 shutting down or
executor unavailable, 504 timeout (with the partial output), 500/502 platform
failure. Every error body is ``{"error": "..."}``; a 500/502 says only that
the platform failed and gives the request id: its details (host paths,
daemon messages) go to the log, never to the caller.

Hostile clients: the body is read only once its memory is reserved from a
budget shared by all requests (``faas.gateway.budget``) and must arrive
within ``http_read_timeout_s``; headers have the same deadline, and open
connections are capped (``faas.gateway.guard``). A client that goes away
is answered quietly.

``X-Request-Id`` is taken from the request when well-formed, otherwise
generated; it is echoed in the response and attached to every log line of
the invocation. If the client disconnects, the invocation is cancelled and its
sandbox destroyed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
import pydantic_core
from pydantic import ValidationError as PydanticValidationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from faas.config import Settings
from faas.errors import (
    AdmissionRejected,
    FaasError,
    InvocationTimeout,
    PayloadTooLarge,
    RequestTimeout,
    ValidationError,
)
from faas.executors.base import Executor
from faas.gateway.budget import ByteBudget
from faas.gateway.openapi import openapi_document
from faas.logs import clip, request_id_var
from faas.models import MAX_PAYLOAD_ARRAY, InvokeRequest
from faas.orchestrator import Orchestrator

log = logging.getLogger("faas.gateway")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_FUNCTION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
#: Commas a body may hold: every JSON list element but the first follows one,
#: and parsing costs 8 bytes an element, so this bounds the memory of lists.
MAX_JSON_COMMAS = MAX_PAYLOAD_ARRAY + 8192


class ClientGone(Exception):
    """The client closed the connection while sending its request."""


def parse_cost(length: int) -> int:
    """Most memory reading and parsing a body of ``length`` bytes may take.

    The body itself, the strings parsed from it (never longer than the body;
    the parser makes each string once, without a scratch copy), the decoded
    payload (shorter than its base64 string) and the lists (8 bytes an
    element; elements are bounded by the commas, at most one per two bytes
    and at most ``MAX_JSON_COMMAS``).
    """
    return 2 * length + 8 * min(length // 2 + 1, MAX_JSON_COMMAS) + 64 * 1024


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(status: int, message: str, request_id: str = "",
                   headers: Mapping[str, str] | None = None,
                   extra: Mapping[str, Any] | None = None) -> Response:
    body: dict[str, Any] = dict(extra or {})
    body["error"] = message
    hdrs = dict(headers or {})
    if request_id:
        hdrs["x-request-id"] = request_id
    return OrjsonResponse(body, status_code=status, headers=hdrs)


def declared_length(request: Request, limit: int) -> int | None:
    """The body's Content-Length, or None without one; 400 if malformed, 413 over ``limit``.

    Checked before anything is reserved or read.
    """
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not declared.isdigit() or len(declared) > 18:
        raise ValidationError("invalid Content-Length header")
    if int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds {limit}")
    return int(declared)


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body, refusing (413) one that grows past ``limit`` as it streams in.

    The whole body must arrive within ``timeout_s`` (else ``RequestTimeout``);
    a client that disconnects meanwhile raises ``ClientGone``.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout_s:g}s") from None
    except ClientDisconnect:
        raise ClientGone from None
    return b"".join(chunks)


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (pydantic-core's parser makes each string once,
    without the scratch copy other parsers take, so a large payload string
    costs its own size only)."""
    if body.count(b",") > MAX_JSON_COMMAS:
        raise PayloadTooLarge(
            f"request body holds more than {MAX_JSON_COMMAS} list elements; a payload "
            f"over {MAX_PAYLOAD_ARRAY} bytes must be sent as a base64 string")
    try:
        data = pydantic_core.from_json(body, cache_strings=False)
    except ValueError as exc:
        raise ValidationError(f"request body is not valid JSON: {clip(exc, 200)}") from None
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object")
    payload = data.get("payload")
    if isinstance(payload, list) and len(payload) > MAX_PAYLOAD_ARRAY:
        raise PayloadTooLarge(
            f"a payload array may hold at most {MAX_PAYLOAD_ARRAY} bytes; a larger payload "
            "must be sent as a base64 string")
    return data


def validate_invoke(data: dict[str, Any]) -> InvokeRequest:
    try:
        return InvokeRequest.model_validate(data)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(clip(p, 40) for p in e['loc']) or 'body'}: {clip(e['msg'], 300)}"
            for e in exc.errors()[:10]
        )
        raise ValidationError(f"invalid request: {problems}") from None


def parse_invoke(body: bytes) -> InvokeRequest:
    return validate_invoke(parse_json(body))


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def create_app(settings: Settings, executors: Mapping[str, Executor],
               orchestrator: Orchestrator | None = None,
               unavailable: Mapping[str, str] | None = None) -> Starlette:
    """Build the gateway around ``executors`` (already constructed; the app closes them).

    ``unavailable`` maps tiers that could not be built to the reason, for
    ``/readyz`` and for a clear 503 when a request names one.
    """
    orch = orchestrator or Orchestrator(settings, executors, unavailable=unavailable)
    budget = ByteBudget(settings.body_budget_bytes)

    async def invoke(request: Request) -> Response:
        raw_id = request.headers.get("x-request-id", "")
        request_id = raw_id if _REQUEST_ID.fullmatch(raw_id) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        encoding = "text"
        reservation = None
        try:
            function_id = request.path_params["function_id"]
            if not _FUNCTION_ID.fullmatch(function_id):
                raise ValidationError("function_id must be 1-128 of [A-Za-z0-9._-]")
            loop = asyncio.get_running_loop()
            length = declared_length(request, settings.max_body_bytes)
            reservation = await budget.reserve(
                parse_cost(settings.max_body_bytes if length is None else length),
                loop.time() + settings.http_read_timeout_s)
            body = await read_body(request, settings.max_body_bytes,
                                   settings.http_read_timeout_s)
            # Free each stage before the next: body, then the parsed strings;
            # only the decoded payload stays.
            data = parse_json(body)
            del body
            invoke_request = validate_invoke(data)
            del data
            reservation.shrink(len(invoke_request.payload))
            encoding = invoke_request.output_encoding
            work = asyncio.ensure_future(orch.invoke(function_id, invoke_request, request_id))
            del invoke_request
            watch = asyncio.ensure_future(_wait_disconnect(request))
            try:
                await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                watch.cancel()
                if not work.done():
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError, FaasError):
                        await work
            if work.cancelled():
                log.info("client disconnected; the invocation was cancelled")
                return Response(status_code=499)
            result = work.result()
            return OrjsonResponse(result.to_json(encoding),
                                  headers={"x-request-id": request_id})
        except ClientGone:
            log.debug("client disconnected while sending its request")
            return Response(status_code=499)
        except InvocationTimeout as exc:
            extra = exc.result.to_json(encoding)
            extra["request_id"] = request_id
            return error_response(504, str(exc), request_id, extra=extra)
        except AdmissionRejected as exc:
            return error_response(429, str(exc), request_id,
                                  headers={"retry-after": str(exc.retry_after_s)})
        except FaasError as exc:
            if exc.status in (500, 502):
                log.error("invocation failed: %s", exc)
                return error_response(exc.status, _platform_failure(request_id), request_id)
            return error_response(exc.status, str(exc), request_id)
        finally:
            if reservation is not None:
                reservation.release()
            request_id_var.reset(token)

    async def healthz(request: Request) -> Response:
        return OrjsonResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready = orch.accepting and settings.default_executor in orch.executors
        # Names only: why a tier is unavailable (paths, versions) is in the
        # log and in `faas doctor`, for the operator.
        body = {"ready": ready, "accepting": orch.accepting,
                "executors": sorted(orch.executors), "unavailable": sorted(orch.unavailable),
                "default_executor": settings.default_executor}
        return OrjsonResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        orch.refresh_pool_gauges()
        orch.metrics.body_budget_used.set(budget.used)
        # Rendering walks every series: off the event loop, so a scrape
        # never delays /healthz or an invocation.
        text = await asyncio.to_thread(orch.metrics.render)
        return Response(text,
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(request: Request) -> Response:
        return OrjsonResponse(openapi_document())

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, f"no route for {clip(request.method, 20)} "
                                   f"{clip(request.url.path, 200)}")

    async def bad_method(request: Request, exc: Exception) -> Response:
        return error_response(405, f"method {clip(request.method, 20)} not allowed here")

    async def internal_error(request: Request, exc: Exception) -> Response:
        # A bug, not a FaasError: log it whole, answer JSON like every other error.
        if isinstance(exc, ClientDisconnect):
            log.debug("client disconnected on %s", request.method)
            return Response(status_code=499)
        log.error("unhandled error on %s %s", request.method, clip(request.url.path, 200),
                  exc_info=exc)
        return error_response(500, "internal server error", request_id_var.get())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await orch.shutdown(settings.shutdown_grace_s)

    app = Starlette(
        routes=[
            Route("/functions/{function_id}/invoke", invoke, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: bad_method, Exception: internal_error},
        lifespan=lifespan,
    )
    app.state.orchestrator = orch
    app.state.body_budget = budget
    return app


def _platform_failure(request_id: str) -> str:
    return (f"the platform failed to run this invocation (request id {request_id}); "
            "the operator's log has the details")
