"""How the gateway answers: JSON rendered by orjson, and one shape for every error."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

from faas.errors import AdmissionRejected, FaasError, platform_failure

log = logging.getLogger("faas.gateway")


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class PrometheusResponse(Response):
    media_type = "text/plain; version=0.0.4; charset=utf-8"


def error_response(status: int, message: str, request_id: str = "",
                   headers: Mapping[str, str] | None = None,
                   extra: Mapping[str, Any] | None = None) -> Response:
    """``{"error": message}`` (after ``extra``'s keys), with the request id echoed if any."""
    body: dict[str, Any] = dict(extra or {})
    body["error"] = message
    hdrs = dict(headers or {})
    if request_id:
        hdrs["x-request-id"] = request_id
    return OrjsonResponse(body, status_code=status, headers=hdrs)


def failure_response(exc: FaasError, request_id: str) -> Response:
    """How a call that failed is answered, on every route that runs one: its status and
    message, ``Retry-After`` on a 429, and for a 500/502 only the request id (the details
    go to the operator's log, never to the caller)."""
    if isinstance(exc, AdmissionRejected):
        return error_response(429, str(exc), request_id,
                              headers={"retry-after": str(exc.retry_after_s)})
    if exc.status in (500, 502):
        log.error("invocation failed: %s", exc)
        return error_response(exc.status, platform_failure(request_id), request_id)
    return error_response(exc.status, str(exc), request_id)
