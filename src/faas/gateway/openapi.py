"""The OpenAPI document, generated from the request model so it cannot drift."""

from __future__ import annotations

from functools import cache
from typing import Any

from faas import __version__
from faas.models import InvokeRequest

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_RESULT = {
    "type": "object",
    "properties": {
        "stdout": {"type": "string"}, "stderr": {"type": "string"},
        "error": {"type": ["string", "null"]}, "exit_code": {"type": ["integer", "null"]},
        "signal": {"type": ["integer", "null"]}, "duration_ms": {"type": "number"},
        "timed_out": {"type": "boolean"},
        "truncated": {"type": "object", "properties": {"stdout": {"type": "boolean"},
                                                       "stderr": {"type": "boolean"}}},
        "request_id": {"type": "string"}, "executor": {"type": "string"},
        "stdout_base64": {"type": "string"}, "stderr_base64": {"type": "string"},
    },
    "required": ["stdout", "stderr", "error"],
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


@cache
def openapi_document() -> dict[str, Any]:
    request_schema = InvokeRequest.model_json_schema()
    errors = {
        str(code): {"description": why, **_json(_ERROR)}
        for code, why in [(400, "malformed request"), (404, "image not found"),
                          (413, "body or payload too large"),
                          (429, "admission full; see Retry-After"),
                          (500, "platform failure"), (503, "shutting down or unavailable")]
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "faas gateway", "version": __version__},
        "paths": {
            "/functions/{function_id}/invoke": {"post": {
                "summary": "Run a command in a fresh sandbox",
                "parameters": [{"name": "function_id", "in": "path", "required": True,
                                "schema": {"type": "string",
                                           "pattern": "^[A-Za-z0-9._-]{1,128}$"}},
                               {"name": "X-Request-Id", "in": "header", "required": False,
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True, **_json(request_schema)},
                "responses": {
                    "200": {"description": "the command ran", **_json(_RESULT)},
                    "504": {"description": "deadline passed; partial output",
                            **_json({"allOf": [_RESULT, _ERROR]})},
                    **errors,
                },
            }},
            "/healthz": {"get": {"summary": "liveness",
                                 "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "readiness", "responses": {
                "200": {"description": "ready"}, "503": {"description": "not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "text exposition format"}}}},
        },
    }
