"""``POST /function/{id}``: a deployed function as a plain HTTP endpoint (OpenFaaS-style).

The request body is the command's stdin, byte for byte; the response body is
its stdout, sent with the function's ``content_type``. Status: 200 when it
exited 0, 500 when it did not (its stderr's last KiB, printable ASCII only,
in ``X-Faas-Error``), 504 when the deadline passed (the output so far).
Headers: ``X-Faas-Exit-Code`` (``128+N`` when killed by signal N),
``X-Faas-Duration-Ms``, ``X-Request-Id``. The request reaches the command
as environment, over the function's own: ``Http_Method``, ``Http_Path``,
``Http_Query`` (the raw query string, at most ``MAX_QUERY_BYTES``),
``Http_Content_Type`` and ``Http_User_Agent`` (at most ``MAX_HEADER_BYTES``);
each must be printable ASCII within its bound, else 400. Only deployed
functions: any other id is a 404. Refusals before the command ran are
``{"error": ...}`` JSON like every other route's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from starlette.requests import Request
from starlette.responses import Response

from faas.errors import FaasError, InvocationTimeout, NotFound, ValidationError
from faas.functions import deployed_request
from faas.functions.spec import DEFAULT_CONTENT_TYPE
from faas.gateway.auth import current_principal
from faas.gateway.body import ClientGone, declared_length, read_body
from faas.gateway.calls import find_deployed, pinned_version, run_call
from faas.gateway.context import Gateway
from faas.gateway.raw_route import RawRoute
from faas.gateway.responses import failure_response
from faas.gateway.routes.functions import DeployedId
from faas.gateway.routes.invoke import RESPONSES, RequestId, Version
from faas.logs import request_id_var
from faas.models import InvocationResult
from faas.tenancy.principal import qualify

MAX_QUERY_BYTES = 4096
MAX_HEADER_BYTES = 256
#: Bytes of stderr (its end) sent back in ``X-Faas-Error``.
ERROR_TAIL_BYTES = 1024
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]+")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def parameters(function_id: DeployedId, version: Version = None, x_request_id: RequestId = "",
               user_agent: Annotated[str, Header(max_length=MAX_HEADER_BYTES)] = "") -> None:
    """Declared for the document; ``call`` reads and checks them itself."""


def request_env(request: Request) -> list[str]:
    """The ``Http_*`` variables for this request; 400 if one is too long or not printable."""
    values = {"Http_Method": request.method, "Http_Path": request.url.path,
              "Http_Query": request.scope.get("query_string", b"").decode("latin-1"),
              "Http_Content_Type": request.headers.get("content-type", ""),
              "Http_User_Agent": request.headers.get("user-agent", "")}
    for name, value in values.items():
        limit = MAX_QUERY_BYTES if name == "Http_Query" else MAX_HEADER_BYTES
        if len(value) > limit or not _PRINTABLE.fullmatch(value):
            raise ValidationError(f"{name} must be printable ASCII of at most {limit} bytes")
    return [f"{name}={value}" for name, value in values.items() if value]


def error_tail(result: InvocationResult) -> str:
    """The end of stderr (or the platform's error), as a header value: printable ASCII."""
    text = result.stderr[-ERROR_TAIL_BYTES:] or (result.error or "").encode()[-ERROR_TAIL_BYTES:]
    return _NOT_PRINTABLE.sub(b" ", text).decode("ascii").strip()


def answer(result: InvocationResult, status: int, content_type: str,
           request_id: str) -> Response:
    headers = {"x-request-id": request_id,
               "x-faas-duration-ms": f"{result.duration_ms:.3f}"}
    code = result.exit_code if result.signal is None else 128 + result.signal
    if code is not None:
        headers["x-faas-exit-code"] = str(code)
    if status != 200:
        headers["x-faas-error"] = error_tail(result) or "failed"
    return Response(result.stdout, status_code=status, headers=headers,
                    media_type=content_type)


def add_routes(api: APIRouter, gateway: Gateway) -> None:
    settings, budget = gateway.settings, gateway.budget

    async def call(request: Request) -> Response:
        raw_id = request.headers.get("x-request-id", "")
        request_id = raw_id if _REQUEST_ID.fullmatch(raw_id) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        reservation = None
        content_type = DEFAULT_CONTENT_TYPE
        held = contextlib.AsyncExitStack()  # the tenant's rate token and concurrency slot
        try:
            caller = current_principal()
            function_id = qualify(caller.tenant, request.path_params["function_id"])
            quotas = gateway.tenant_quotas()
            await held.enter_async_context(quotas.admit(caller))
            deployed = await find_deployed(gateway, function_id, pinned_version(request))
            if deployed is None:
                raise NotFound("function not deployed")
            content_type = deployed.spec.content_type or DEFAULT_CONTENT_TYPE
            env = request_env(request)
            limit = settings.max_payload_bytes
            length = declared_length(request, limit)
            reservation = await budget.reserve(
                limit if length is None else length,
                asyncio.get_running_loop().time() + settings.http_read_timeout_s)
            stdin = await read_body(request, limit, settings.http_read_timeout_s)
            invoke_request = deployed_request(deployed.spec, {"env_vars": env}, settings)
            await quotas.check_request(caller, invoke_request)
            result = await run_call(request, gateway, function_id,
                                    invoke_request.model_copy(update={"payload": stdin}),
                                    request_id, deployed, caller=caller.key_id)
            if result is None:
                return Response(status_code=499)
            return answer(result, 200 if result.error is None else 500, content_type,
                          request_id)
        except ClientGone:
            return Response(status_code=499)
        except InvocationTimeout as exc:
            return answer(exc.result, 504, content_type, request_id)
        except FaasError as exc:
            return failure_response(exc, request_id)
        finally:
            if reservation is not None:
                reservation.release()
            await held.aclose()
            request_id_var.reset(token)

    responses: dict[int | str, dict[str, Any]] = {
        **{k: v for k, v in RESPONSES.items() if k not in (500, 504)},
        404: {**RESPONSES[404], "description": "not deployed, or no such version"},
        500: {"description": "the command exited non-zero (stdout as the body, the stderr "
                             "tail in X-Faas-Error), or the platform failed (JSON error)",
              "content": {"application/octet-stream": {}, "application/json": {
                  "schema": {"$ref": "#/components/schemas/ErrorBody"}}}},
        504: {"description": "deadline passed: the output so far",
              "content": {"application/octet-stream": {}}},
    }
    api.add_api_route(
        "/function/{function_id}", call, methods=["POST"], route_class_override=RawRoute,
        dependencies=[Depends(parameters)], tags=["invocations"],
        summary="Call a deployed function: the body is stdin, the answer is stdout",
        response_class=Response, responses={
            200: {"description": "exit 0: stdout, with the function's content_type",
                  "content": {"application/octet-stream": {}}}, **responses},
        openapi_extra={"requestBody": {"required": False, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
