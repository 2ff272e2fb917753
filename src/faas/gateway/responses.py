"""How the gateway answers: JSON rendered by orjson, and one shape for every error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response


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


def platform_failure(request_id: str) -> str:
    """What a 500/502 says: the request id only; the details are in the operator's log."""
    return (f"the platform failed to run this invocation (request id {request_id}); "
            "the operator's log has the details")
