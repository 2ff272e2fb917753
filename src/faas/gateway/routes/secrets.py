"""``/secrets``: a tenant's secrets, write-only over the API.

``PUT /secrets/{name}`` sets one from ``{"value": "..."}`` or
``{"value_base64": "..."}`` (201 created, 200 replaced); ``GET /secrets`` and
``GET /secrets/{name}`` say names, sizes and times, never a value;
``DELETE /secrets/{name}`` removes one (204). Every route works on the
caller's tenant only (``current_principal()``), so another tenant's secret is
simply one that does not exist (404). The developer role is required before
any handler runs (``faas.gateway.access``).

The PUT body is read like a spec's (``faas.gateway.body``): memory reserved
from the budget first, Content-Length checked (413), the body within the read
timeout (408) and no byte past ``MAX_BODY_BYTES``. A value over
``MAX_SECRET_BYTES`` is a 413 as well. Values never reach a log line.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Annotated, Any

import pydantic_core
from fastapi import APIRouter, Depends, Path
from starlette.requests import Request
from starlette.responses import Response

from faas.errors import FaasError, PayloadTooLarge, ValidationError, platform_failure
from faas.gateway.auth import current_principal
from faas.gateway.body import ClientGone, declared_length, parse_cost, read_body
from faas.gateway.context import Gateway
from faas.gateway.raw_route import RawRoute
from faas.gateway.responses import OrjsonResponse, error_response
from faas.gateway.schemas import ErrorBody, SecretAnswer, SecretList, SecretValueBody
from faas.secrets.names import MAX_SECRET_BYTES, SECRET_NAME_PATTERN, check_secret_name
from faas.store.secret_store import SecretMeta

log = logging.getLogger("faas.gateway")
#: The largest PUT body: a value of MAX_SECRET_BYTES written as JSON escapes (\u00XX).
MAX_BODY_BYTES = 6 * MAX_SECRET_BYTES + 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SecretName = Annotated[str, Path(
    description="1-64 of [A-Za-z0-9_-], starting with a letter or digit",
    pattern=f"^{SECRET_NAME_PATTERN.pattern}$")]


def _error(why: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": why}


Responses = dict[int | str, dict[str, Any]]
_STORE: Responses = {503: _error("the store is unavailable")}
_FOUND: Responses = {400: _error("malformed name"), 404: _error("no such secret"), **_STORE}
PUT_RESPONSES: Responses = {
    200: {"model": SecretAnswer, "description": "replaced"},
    400: _error("malformed name or body (exactly one of value and value_base64)"),
    408: _error("request body not received within the read timeout"),
    413: _error(f"value over {MAX_SECRET_BYTES} bytes"),
    415: _error("not application/json"),
    429: _error("too many large request bodies in memory"),
    **_STORE,
}


def _iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def meta_json(meta: SecretMeta) -> dict[str, Any]:
    """A secret as the API shows it: never its value."""
    return {"name": meta.name, "size": meta.size, "created_at": _iso(meta.created_at),
            "updated_at": _iso(meta.updated_at)}


def parse_value(body: bytes) -> bytes:
    """The value of a PUT body: ``{"value": text}`` or ``{"value_base64": base64}``."""
    try:
        data = pydantic_core.from_json(body, cache_strings=False)
    except ValueError:
        raise ValidationError("the body is not valid JSON") from None
    if not isinstance(data, dict) or set(data) not in ({"value"}, {"value_base64"}):
        raise ValidationError('the body is {"value": "..."} or {"value_base64": "..."}')
    if "value" in data:
        text = data["value"]
        if not isinstance(text, str):
            raise ValidationError("value must be a string")
        try:
            value = text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("value is not valid Unicode text (use value_base64)") from None
    else:
        encoded = data["value_base64"]
        if not isinstance(encoded, str):
            raise ValidationError("value_base64 must be a string")
        if len(encoded) > 4 * (MAX_SECRET_BYTES // 3 + 1):
            raise PayloadTooLarge(f"a secret holds at most {MAX_SECRET_BYTES} bytes")
        try:
            value = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("value_base64 is not valid base64") from None
    if len(value) > MAX_SECRET_BYTES:
        raise PayloadTooLarge(f"a secret holds at most {MAX_SECRET_BYTES} bytes")
    return value


def _name(name: str) -> str:
    try:
        return check_secret_name(name)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def put_parameters(name: SecretName) -> None:
    """Declared for the document; ``put_secret`` reads and checks the path itself."""


def add_routes(api: APIRouter, gateway: Gateway) -> None:
    settings, budget = gateway.settings, gateway.budget

    async def put_secret(request: Request) -> Response:
        reservation = None
        try:
            name = _name(request.path_params["name"])
            principal = current_principal()
            vault = await gateway.vault()
            kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
            if kind != "application/json":
                return error_response(415, "send the value as application/json")
            deadline = asyncio.get_running_loop().time() + settings.http_read_timeout_s
            length = declared_length(request, MAX_BODY_BYTES)
            reservation = await budget.reserve(
                parse_cost(MAX_BODY_BYTES if length is None else length), deadline)
            body = await read_body(request, MAX_BODY_BYTES, settings.http_read_timeout_s)
            meta, created = await vault.put(principal, name, parse_value(body))
            return OrjsonResponse(meta_json(meta), status_code=201 if created else 200)
        except ClientGone:
            return Response(status_code=499)
        except FaasError as exc:
            return _failure(exc)
        finally:
            if reservation is not None:
                reservation.release()

    tags: list[str | Enum] = ["secrets"]
    api.add_api_route(
        "/secrets/{name}", put_secret, methods=["PUT"], route_class_override=RawRoute,
        dependencies=[Depends(put_parameters)], tags=tags, status_code=201,
        summary="Set a secret of the caller's tenant (values are write-only)",
        response_model=SecretAnswer, response_description="created",
        responses=PUT_RESPONSES, openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": {
                **SecretValueBody.model_json_schema(), "minProperties": 1,
                "maxProperties": 1}}}}})

    @api.get("/secrets", response_model=SecretList, tags=tags,
             summary="The caller's tenant's secrets: names, sizes, times (no values)",
             responses=_STORE)
    async def list_secrets() -> Response:
        try:
            items = await (await gateway.vault()).list(current_principal())
            return OrjsonResponse({"items": [meta_json(meta) for meta in items]})
        except FaasError as exc:
            return _failure(exc)

    @api.get("/secrets/{name}", response_model=SecretAnswer, tags=tags,
             summary="One secret's name, size and times (never its value)", responses=_FOUND)
    async def get_secret(name: SecretName) -> Response:
        try:
            meta = await (await gateway.vault()).meta(current_principal(), name)
            return OrjsonResponse(meta_json(meta))
        except FaasError as exc:
            return _failure(exc)

    @api.delete("/secrets/{name}", status_code=204, tags=tags, response_class=Response,
                summary="Delete a secret (calls that start later no longer get it)",
                responses=_FOUND)
    async def delete_secret(name: SecretName) -> Response:
        try:
            await (await gateway.vault()).delete(current_principal(), name)
            return Response(status_code=204)
        except FaasError as exc:
            return _failure(exc)


def _failure(exc: FaasError) -> Response:
    """A ``FaasError`` as its status; a platform failure says nothing of its details."""
    if exc.status >= 500 and exc.status != 503:
        log.error("secrets request failed: %s", type(exc).__name__)
        return error_response(exc.status, platform_failure("-"))
    return error_response(exc.status, str(exc))
