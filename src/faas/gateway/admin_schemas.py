"""Typed answers of the admin routes (tenants, keys, audit, whoami), for the document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from faas.gateway.schemas import _Answer

RoleName = Literal["invoker", "developer", "admin"]


class WhoAmI(_Answer):
    tenant: str
    role: RoleName
    key_id: str | None = Field(description="null: the server runs open (no keys)")


class TenantAnswer(_Answer):
    name: str
    created_at: str | None = Field(description="ISO 8601, UTC")
    quotas: dict[str, Any] = Field(description="this tenant's overrides of the defaults")


class TenantDetail(TenantAnswer):
    effective_quotas: dict[str, Any] = Field(description="the quotas that apply now")


class TenantList(_Answer):
    items: list[TenantAnswer]


class KeyAnswer(_Answer):
    id: str = Field(description="12 hex digits; not secret")
    tenant: str
    role: RoleName
    name: str
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None
    created_by: str | None


class IssuedKeyAnswer(KeyAnswer):
    key: str = Field(description="the key itself: shown this once, never again")


class KeyList(_Answer):
    items: list[KeyAnswer]


class AuditAnswer(_Answer):
    id: str
    at: str | None
    tenant: str
    actor: str | None = Field(description="the key that acted (null: open server or CLI)")
    action: str
    target: str
    detail: str | None


class AuditList(_Answer):
    items: list[AuditAnswer]
    next_cursor: str | None
