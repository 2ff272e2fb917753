"""The HTTP gateway (the seed's faas-gateway), a Starlette app.

Routes::

    POST /functions/{function_id}/invoke   run a command (body: InvokeRequest)
    GET  /healthz                          the process answers
    GET  /readyz                           accepting work and the default executor exists
    GET  /metrics                          Prometheus text format
    GET  /openapi.json                     the API description

Status codes of an invoke: 200 when the command ran (``error`` set if it
exited non-zero or could not start), 400 malformed request, 404 missing image,
413 body or payload too large, 429 + Retry-After when admission is full, 503
shutting down or executor unavailable, 504 timeout (with the partial output),
500/502 platform failure. Every error body is ``{"error": "..."}``.

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
from pydantic import ValidationError as PydanticValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from faas.config import Settings
from faas.errors import (
    AdmissionRejected,
    FaasError,
    InvocationTimeout,
    PayloadTooLarge,
    ValidationError,
)
from faas.executors.base import Executor
from faas.gateway.openapi import openapi_document
from faas.logs import request_id_var
from faas.models import InvokeRequest
from faas.orchestrator import Orchestrator

log = logging.getLogger("faas.gateway")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_FUNCTION_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


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


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ValidationError("invalid Content-Length header")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_invoke(body: bytes) -> InvokeRequest:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object")
    try:
        return InvokeRequest.model_validate(data)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise ValidationError(f"invalid request: {problems}") from None


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

    async def invoke(request: Request) -> Response:
        raw_id = request.headers.get("x-request-id", "")
        request_id = raw_id if _REQUEST_ID.match(raw_id) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        encoding = "text"
        try:
            function_id = request.path_params["function_id"]
            if not _FUNCTION_ID.match(function_id):
                raise ValidationError("function_id must be 1-128 of [A-Za-z0-9._-]")
            body = await read_body(request, settings.max_body_bytes)
            invoke_request = parse_invoke(body)
            encoding = invoke_request.output_encoding
            work = asyncio.ensure_future(orch.invoke(function_id, invoke_request, request_id))
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
        except InvocationTimeout as exc:
            extra = exc.result.to_json(encoding)
            extra["request_id"] = request_id
            return error_response(504, str(exc), request_id, extra=extra)
        except AdmissionRejected as exc:
            return error_response(429, str(exc), request_id,
                                  headers={"retry-after": str(exc.retry_after_s)})
        except FaasError as exc:
            if exc.status >= 500:
                log.error("invocation failed: %s", exc)
            return error_response(exc.status, str(exc), request_id)
        finally:
            request_id_var.reset(token)

    async def healthz(request: Request) -> Response:
        return OrjsonResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready = orch.accepting and settings.default_executor in orch.executors
        body = {"ready": ready, "accepting": orch.accepting,
                "executors": sorted(orch.executors), "unavailable": orch.unavailable,
                "default_executor": settings.default_executor}
        return OrjsonResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        orch.refresh_pool_gauges()
        return Response(orch.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(request: Request) -> Response:
        return OrjsonResponse(openapi_document())

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, f"no route for {request.method} {request.url.path}")

    async def bad_method(request: Request, exc: Exception) -> Response:
        return error_response(405, f"method {request.method} not allowed here")

    async def internal_error(request: Request, exc: Exception) -> Response:
        # A bug, not a FaasError: log it whole, answer JSON like every other error.
        log.error("unhandled error on %s %s", request.method, request.url.path,
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
    return app
