"""Admin routes: ``/tenants``, ``/keys``, ``/audit``, and ``/whoami`` for every caller.

Admins manage the whole installation: tenants and their quotas, every
tenant's keys, the audit log (``faas.gateway.access`` lets only the admin
role in). The same operations work without a server as ``faas admin ...``
(``faas.tenancy.admin``). A new key is answered once, with the key itself;
revoking one takes effect on this server at once.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from starlette.requests import Request
from starlette.responses import Response

from faas.errors import FaasError, ValidationError
from faas.gateway.admin_schemas import (
    AuditList,
    IssuedKeyAnswer,
    KeyAnswer,
    KeyList,
    TenantAnswer,
    TenantDetail,
    TenantList,
    WhoAmI,
)
from faas.gateway.auth import current_principal
from faas.gateway.body import ClientGone, parse_json, read_body
from faas.gateway.context import Gateway
from faas.gateway.responses import OrjsonResponse, failure_response
from faas.gateway.routes.invocations import parse_since
from faas.gateway.schemas import ErrorBody
from faas.invocations.views import iso
from faas.store.tenant_records import MAX_AUDIT_PAGE
from faas.tenancy import admin
from faas.tenancy.principal import TENANT_PATTERN
from faas.tenancy.quotas import Quotas

#: The largest admin request body (a tenant with its quotas, a key request).
MAX_ADMIN_BODY = 16 * 1024

TenantName = Annotated[str, Path(pattern=f"^{TENANT_PATTERN.pattern}$", max_length=32)]
KeyId = Annotated[str, Path(pattern="^[0-9a-f]{12}$")]


def _error(why: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": why}


_COMMON: dict[int | str, dict[str, Any]] = {
    400: _error("malformed body or query"), 503: _error("the store is unavailable")}


def add_routes(api: APIRouter, gateway: Gateway) -> None:
    settings = gateway.settings

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            raw = await read_body(request, MAX_ADMIN_BODY, settings.http_read_timeout_s)
        except ClientGone:
            raise ValidationError("the request body did not arrive whole") from None
        return parse_json(raw) if raw.strip() else {}

    def keys_changed(key_id: str | None = None) -> None:
        if gateway.authenticator is not None:
            if key_id is not None:
                gateway.authenticator.forget(key_id)
            gateway.authenticator.keys_changed()

    async def whoami() -> Response:
        principal = current_principal()
        return OrjsonResponse({"tenant": principal.tenant, "role": principal.role.label,
                               "key_id": principal.key_id})

    async def create_tenant(request: Request) -> Response:
        try:
            body = await body_of(request)
            tenant = await admin.create_tenant(
                gateway.deployed().store.tenants, body.get("name"), _object(body, "quotas"),
                current_principal().key_id)
        except FaasError as exc:
            return failure_response(exc, "")
        return OrjsonResponse(admin.tenant_json(tenant), status_code=201)

    async def list_tenants() -> Response:
        try:
            found = await gateway.deployed().store.tenants.list_tenants()
        except FaasError as exc:
            return failure_response(exc, "")
        return OrjsonResponse({"items": [admin.tenant_json(t) for t in found]})

    async def get_tenant(name: TenantName) -> Response:
        try:
            tenant = await gateway.deployed().store.tenants.get_tenant(name)
        except FaasError as exc:
            return failure_response(exc, "")
        effective = dataclasses.asdict(Quotas.of(settings, tenant.quotas))
        return OrjsonResponse({**admin.tenant_json(tenant), "effective_quotas": effective})

    async def put_quotas(name: TenantName, request: Request) -> Response:
        try:
            body = await body_of(request)
            tenant = await admin.set_quotas(gateway.deployed().store.tenants, name,
                                            _object(body, "quotas") or {},
                                            current_principal().key_id)
        except FaasError as exc:
            return failure_response(exc, "")
        return OrjsonResponse(admin.tenant_json(tenant))

    async def create_key(request: Request) -> Response:
        try:
            body = await body_of(request)
            principal = current_principal()
            issued = await admin.create_key(
                gateway.deployed().store.tenants, body.get("tenant", principal.tenant),
                body.get("role"), body.get("name", ""), body.get("expires_in_s"),
                principal.key_id)
        except FaasError as exc:
            return failure_response(exc, "")
        keys_changed()
        return OrjsonResponse({**admin.key_json(issued.info), "key": issued.key},
                              status_code=201, headers={"cache-control": "no-store"})

    async def list_keys(tenant: Annotated[str | None, Query(
            pattern=f"^{TENANT_PATTERN.pattern}$", max_length=32)] = None) -> Response:
        try:
            found = await gateway.deployed().store.tenants.list_keys(tenant)
        except FaasError as exc:
            return failure_response(exc, "")
        return OrjsonResponse({"items": [admin.key_json(k) for k in found]})

    async def revoke_key(key_id: KeyId) -> Response:
        try:
            info = await admin.revoke_key(gateway.deployed().store.tenants, key_id,
                                          current_principal().key_id)
        except FaasError as exc:
            return failure_response(exc, "")
        keys_changed(key_id)
        return OrjsonResponse(admin.key_json(info))

    async def list_audit(
            tenant: Annotated[str | None, Query(pattern=f"^{TENANT_PATTERN.pattern}$",
                                                max_length=32)] = None,
            since: Annotated[str | None, Query(max_length=40)] = None,
            limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 50,
            cursor: Annotated[str | None, Query(max_length=200)] = None) -> Response:
        try:
            page = await gateway.deployed().store.tenants.list_audit(
                tenant=tenant, since=None if since is None else parse_since(since),
                limit=limit, cursor=cursor)
        except FaasError as exc:
            return failure_response(exc, "")
        return OrjsonResponse({"items": [{
            "id": e.id, "at": iso(e.at), "tenant": e.tenant, "actor": e.actor,
            "action": e.action, "target": e.target, "detail": e.detail} for e in page.items],
            "next_cursor": page.next_cursor})

    found = {**_COMMON, 404: _error("no such tenant or key")}
    tags: list[str | Enum] = ["admin"]
    api.add_api_route("/whoami", whoami, methods=["GET"], tags=tags, response_model=WhoAmI,
                      summary="The caller: its tenant, role and key id")
    api.add_api_route("/tenants", create_tenant, methods=["POST"], tags=tags,
                      status_code=201, response_model=TenantAnswer, summary="Create a tenant",
                      responses={**_COMMON, 409: _error("the name is taken")})
    api.add_api_route("/tenants", list_tenants, methods=["GET"], tags=tags,
                      response_model=TenantList, summary="Every tenant", responses=_COMMON)
    api.add_api_route("/tenants/{name}", get_tenant, methods=["GET"], tags=tags,
                      response_model=TenantDetail, responses=found,
                      summary="A tenant with its quota overrides and effective quotas")
    api.add_api_route("/tenants/{name}/quotas", put_quotas, methods=["PUT"], tags=tags,
                      response_model=TenantAnswer, responses=found,
                      summary="Replace a tenant's quota overrides ({\"quotas\": {...}})")
    api.add_api_route("/keys", create_key, methods=["POST"], tags=tags, status_code=201,
                      response_model=IssuedKeyAnswer, responses=found,
                      summary="Create an API key (the answer holds the key, once)")
    api.add_api_route("/keys", list_keys, methods=["GET"], tags=tags, response_model=KeyList,
                      responses=_COMMON, summary="API keys (never the keys themselves)")
    api.add_api_route("/keys/{key_id}", revoke_key, methods=["DELETE"], tags=tags,
                      response_model=KeyAnswer, responses=found,
                      summary="Revoke a key: it stops working at once")
    api.add_api_route("/audit", list_audit, methods=["GET"], tags=tags,
                      response_model=AuditList, responses=_COMMON,
                      summary="Who did what, newest first")


def _object(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise ValidationError(f"{name} must be a JSON object")
    return value
