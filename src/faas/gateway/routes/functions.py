"""Deployed functions as a resource: ``PUT``/``GET``/``DELETE /functions/{id}``, the list,
and one version.

``PUT /functions/{id}`` takes either ``application/json`` (the spec) or
``multipart/form-data`` with a ``spec`` part (the same JSON) and then a
``bundle`` part (zip, tar.gz or tar). The body is read under the same rules
as an invoke's: memory reserved from the budget before a byte is read, the
whole body within the read timeout (408), nothing past its limit (413). A
bundle is streamed into the bundle store, never held in memory; the spec
must come first, so a spec with problems is refused before any bundle byte
is stored. Every spec problem is named in one 400 (``problems``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Annotated, Any

import pydantic_core
from fastapi import APIRouter, Depends, Path, Query
from starlette.requests import Request
from starlette.responses import Response

from faas.errors import FaasError, InvalidSpec, ValidationError, platform_failure
from faas.functions import MAX_SPEC_BYTES, parse_spec
from faas.functions.spec import CONTENT_TYPE, MAX_FUNCTION_CONCURRENCY
from faas.functions.views import function_json, summary_json, version_json
from faas.gateway.auth import current_principal
from faas.gateway.body import (
    ClientGone,
    declared_length,
    parse_cost,
    read_body,
    stream_body,
)
from faas.gateway.context import Gateway
from faas.gateway.multipart import MultipartReader, boundary_of
from faas.gateway.raw_route import RawRoute
from faas.gateway.responses import OrjsonResponse, error_response
from faas.gateway.schemas import (
    ErrorBody,
    FunctionDetail,
    FunctionList,
    FunctionSpecBody,
    FunctionVersionAnswer,
    SpecProblems,
)
from faas.gateway.tenant_scope import audit, owned
from faas.logs import clip
from faas.models import MAX_ARGS, MAX_ENV_VARS
from faas.store import (
    FUNCTION_ID_PATTERN,
    MAX_LABEL_FILTERS,
    MAX_PAGE_SIZE,
    BundleRef,
    FunctionSpec,
)
from faas.store.records import (
    MAX_LABEL_KEY_CHARS,
    MAX_LABEL_VALUE_CHARS,
    MAX_LABELS,
    MAX_VERSION,
)
from faas.tenancy.principal import qualify

log = logging.getLogger("faas.gateway")
#: Multipart framing around the spec and the bundle: boundaries, part headers.
MULTIPART_OVERHEAD = 64 * 1024
#: Time a stored upload may take to unpack after its last byte arrived.
UNPACK_S = 120.0

DeployedId = Annotated[str, Path(
    description="1-128 of [A-Za-z0-9._-], starting with a letter or digit",
    pattern=f"^{FUNCTION_ID_PATTERN.pattern}$")]


def _error(why: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": why}


Responses = dict[int | str, dict[str, Any]]
_STORE: Responses = {503: _error("the store is unavailable")}
PUT_RESPONSES: Responses = {
    400: {"model": SpecProblems | ErrorBody,
          "description": "malformed body, spec problems (listed), or a refused bundle"},
    403: _error("quota exceeded: the tenant's functions or bundle bytes (or a role too low)"),
    408: _error("request body not received within the read timeout"),
    413: _error("spec or bundle too large"),
    415: _error("neither application/json nor multipart/form-data"),
    429: _error("too many large request bodies in memory"),
    **_STORE,
}


def spec_schema(gateway: Gateway, executors: set[str]) -> dict[str, Any]:
    """``FunctionSpecBody``'s schema with this server's bounds (what ``parse_spec`` checks)."""
    schema = FunctionSpecBody.model_json_schema()
    props, s = schema["properties"], gateway.settings
    text = {"type": "string", "pattern": r"^[^\x00-\x1f\x7f-\x9f]*$"}
    props["command"].update(maxItems=MAX_ARGS, items={"type": "string", "pattern": "^[^\x00]*$"})
    props["command"]["prefixItems"] = [{"type": "string", "minLength": 1,
                                        "pattern": "^[^\x00]*$"}]
    for key, extra in (("image", {}), ("executor", {"enum": sorted(executors)})):
        props[key] = {"anyOf": [{**text, "minLength": 1, "maxLength": 64, **extra},
                                {"type": "null"}], "default": None}
    for key, high in (("timeout_s", s.max_timeout_s), ("memory_mb", s.max_memory_mb),
                      ("vcpus", s.max_vcpus), ("max_concurrency", MAX_FUNCTION_CONCURRENCY)):
        props[key]["anyOf"][0]["maximum"] = high
    props["env_vars"].update(maxProperties=MAX_ENV_VARS, propertyNames={
        "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,255}$"},
        additionalProperties={"type": "string", "pattern": "^[^\x00]*$"})
    props["labels"].update(maxProperties=MAX_LABELS, propertyNames={
        "minLength": 1, "maxLength": MAX_LABEL_KEY_CHARS, "pattern": r"^[^=\x00-\x1f\x7f-\x9f]*$"},
        additionalProperties={**text, "maxLength": MAX_LABEL_VALUE_CHARS})
    props["content_type"]["pattern"] = "^" + CONTENT_TYPE.pattern + "$"
    return schema


def put_parameters(function_id: DeployedId) -> None:
    """Declared for the document; ``put_function`` reads and checks the path itself."""


def _spec_json(raw: bytes) -> Any:
    try:
        return pydantic_core.from_json(raw, cache_strings=False)
    except ValueError as exc:
        raise InvalidSpec([f"spec: not valid JSON ({clip(exc, 120)})"]) from None


def add_routes(api: APIRouter, gateway: Gateway) -> None:
    settings, budget = gateway.settings, gateway.budget
    executors = {*gateway.orchestrator.executors, *gateway.orchestrator.unavailable}
    upload_limit = settings.max_bundle_bytes + MAX_SPEC_BYTES + MULTIPART_OVERHEAD

    async def read_multipart(request: Request, deadline: float) -> FunctionSpec:
        functions = gateway.deployed()
        reader = MultipartReader(
            stream_body(request, upload_limit, deadline),
            boundary_of(request.headers.get("content-type", "")))
        spec: FunctionSpec | None = None
        seen: set[str] = set()
        async for part in reader.parts():
            if part.name in seen:
                raise ValidationError(f"more than one {part.name!r} part")
            seen.add(part.name)
            if part.name == "spec":
                spec = parse_spec(_spec_json(await part.read(MAX_SPEC_BYTES)), settings,
                                  executors)
            elif part.name == "bundle":
                if spec is None:
                    raise ValidationError("the spec part must come before the bundle part")
                info = await functions.bundles.put(part.chunks(), deadline=deadline + UNPACK_S)
                spec = dataclasses.replace(spec, bundle=BundleRef(
                    info.sha256, info.packed_bytes, info.unpacked_bytes))
            else:
                raise ValidationError(f"unknown multipart part {clip(part.name, 40)!r}: "
                                      "expected spec and bundle")
        if spec is None:
            raise ValidationError("a multipart upload needs a spec part")
        return spec

    async def put_function(request: Request) -> Response:
        reservation = None
        try:
            name = request.path_params["function_id"]
            if not FUNCTION_ID_PATTERN.fullmatch(name):
                raise ValidationError("function_id must be 1-128 of [A-Za-z0-9._-], starting "
                                      "with a letter or digit")
            principal = current_principal()
            function_id = qualify(principal.tenant, name)
            functions = gateway.deployed()
            # The tenant's functions quota, before a byte of the body is read or stored.
            await gateway.tenant_quotas().check_deploy(principal, function_id, 0)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + settings.http_read_timeout_s
            kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
            if kind == "application/json":
                length = declared_length(request, MAX_SPEC_BYTES)
                reservation = await budget.reserve(
                    parse_cost(MAX_SPEC_BYTES if length is None else length), deadline)
                body = await read_body(request, MAX_SPEC_BYTES, settings.http_read_timeout_s)
                spec = parse_spec(_spec_json(body), settings, executors)
            elif kind == "multipart/form-data":
                declared_length(request, upload_limit)
                reservation = await budget.reserve(parse_cost(MAX_SPEC_BYTES) + 2 * 1024 * 1024,
                                                   deadline)
                spec = await read_multipart(request, deadline)
            else:
                return error_response(415, "send the spec as application/json, or the spec and "
                                           "a bundle as multipart/form-data")
            # ... and its bundle bytes, now that they are known (a redeploy replaces its own).
            await gateway.tenant_quotas().check_deploy(
                principal, function_id, spec.bundle.packed_bytes if spec.bundle else 0)
            version = await functions.store.put_function(function_id, spec)
            functions.recent.forget(function_id)
            await audit(gateway, principal, "function.deploy", name, f"version={version.version}")
            return OrjsonResponse(version_json(version), status_code=201)
        except ClientGone:
            return Response(status_code=499)
        except InvalidSpec as exc:
            return error_response(400, str(exc), extra={"problems": exc.problems})
        except FaasError as exc:
            return _failure(exc)
        finally:
            if reservation is not None:
                reservation.release()

    api.add_api_route(
        "/functions/{function_id}", put_function, methods=["PUT"], route_class_override=RawRoute,
        dependencies=[Depends(put_parameters)], tags=["functions"], status_code=201,
        summary="Deploy a new version of a function", response_model=FunctionVersionAnswer,
        response_description="the version created", responses=PUT_RESPONSES, openapi_extra={
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": spec_schema(gateway, executors)},
                "multipart/form-data": {"schema": {
                    "type": "object", "required": ["spec"], "properties": {
                        "spec": {"type": "string", "description": "the spec as JSON"},
                        "bundle": {"type": "string", "format": "binary", "description":
                                   f"zip, tar.gz or tar; at most {settings.max_bundle_bytes} "
                                   f"bytes, {settings.max_bundle_unpacked_bytes} unpacked"}}},
                    "encoding": {"spec": {"contentType": "application/json"}}}}}})

    @api.get("/functions", response_model=FunctionList, tags=["functions"],
             summary="List deployed functions, by id",
             responses={400: _error("malformed query"), **_STORE})
    async def list_functions(
            label: Annotated[list[str], Query(
                max_length=MAX_LABEL_FILTERS,
                description="KEY=VALUE; repeat for more (all must match)")] = [],  # noqa: B006
            limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
            cursor: Annotated[str | None, Query(max_length=256)] = None) -> Response:
        try:
            filters: dict[str, str] = {}
            for item in label:
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise ValidationError("label filters are KEY=VALUE")
                filters[key] = value
            page = await gateway.deployed().store.list_functions(
                labels=filters, limit=limit, cursor=cursor, tenant=current_principal().tenant)
            return OrjsonResponse({"items": [summary_json(i) for i in page.items],
                                   "next_cursor": page.next_cursor})
        except FaasError as exc:
            return _failure(exc)

    found: Responses = {404: _error("not deployed"), 400: _error("malformed id"), **_STORE}

    @api.get("/functions/{function_id}", response_model=FunctionDetail, tags=["functions"],
             summary="A deployed function: its latest spec, versions and counts",
             responses=found)
    async def get_function(function_id: DeployedId) -> Response:
        try:
            info = await gateway.deployed().store.get_function(owned(function_id))
            return OrjsonResponse(function_json(info))
        except FaasError as exc:
            return _failure(exc)

    @api.get("/functions/{function_id}/versions/{version}",
             response_model=FunctionVersionAnswer, tags=["functions"],
             summary="One version of a deployed function", responses=found)
    async def get_version(function_id: DeployedId,
                          version: Annotated[int, Path(ge=1, le=MAX_VERSION)]) -> Response:
        try:
            found_version = await gateway.deployed().store.get_version(owned(function_id),
                                                                       version)
            return OrjsonResponse(version_json(found_version))
        except FaasError as exc:
            return _failure(exc)

    @api.delete("/functions/{function_id}", status_code=204, tags=["functions"],
                summary="Delete a function: calls in flight finish, new calls get 404",
                response_class=Response, responses=found)
    async def delete_function(function_id: DeployedId) -> Response:
        try:
            principal, name = current_principal(), function_id
            function_id = qualify(principal.tenant, name)
            functions = gateway.deployed()
            functions.recent.forget(function_id)  # before too: no call starts from it meanwhile
            await functions.store.delete_function(function_id)
            functions.recent.forget(function_id)
            await audit(gateway, principal, "function.delete", name)
            return Response(status_code=204)
        except FaasError as exc:
            return _failure(exc)


def _failure(exc: FaasError) -> Response:
    """A ``FaasError`` as its status; a platform failure says nothing of its details."""
    if exc.status >= 500 and exc.status != 503:
        log.error("functions request failed: %s", exc)
        return error_response(exc.status, platform_failure("-"))
    return error_response(exc.status, str(exc))
