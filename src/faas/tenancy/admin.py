"""What admins do, the same from the CLI (on the store) and over HTTP: tenants, keys.

Each operation checks its arguments (names, roles, quotas), does its work in
the store (with its audit entry in the same transaction) and returns plain
records; a new key's secret is returned once, in ``IssuedKey``, and never
stored or logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faas.errors import ValidationError
from faas.invocations.views import iso
from faas.store.tenant_records import KeyInfo, Tenant
from faas.store.tenant_store import SqlTenants, now_us
from faas.tenancy.keys import KEY_ID_PATTERN, new_key
from faas.tenancy.principal import Role, check_tenant
from faas.tenancy.quotas import check_overrides

MAX_KEY_NAME = 64
#: The longest a key may be made to live for (ten years).
MAX_KEY_LIFETIME_S = 10 * 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class IssuedKey:
    info: KeyInfo
    #: the key itself: shown to its maker once
    key: str


def _tenant_name(name: object) -> str:
    try:
        return check_tenant(name)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _quotas(quotas: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return check_overrides(quotas or {})
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


async def create_tenant(tenants: SqlTenants, name: object,
                        quotas: Mapping[str, Any] | None = None,
                        actor: str | None = None) -> Tenant:
    return await tenants.create_tenant(_tenant_name(name), _quotas(quotas), actor)


async def set_quotas(tenants: SqlTenants, name: object, quotas: Mapping[str, Any],
                     actor: str | None = None) -> Tenant:
    return await tenants.set_quotas(_tenant_name(name), _quotas(quotas), actor)


async def create_key(tenants: SqlTenants, tenant: object, role: object, name: object = "",
                     expires_in_s: float | None = None, actor: str | None = None) -> IssuedKey:
    """A new key of ``role`` for ``tenant`` (``NotFound`` if the tenant does not exist)."""
    tenant_name = _tenant_name(tenant)
    try:
        parsed = Role.parse(role)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    if not isinstance(name, str) or len(name) > MAX_KEY_NAME or not name.isprintable():
        raise ValidationError(f"a key name is at most {MAX_KEY_NAME} printable characters")
    expires_at = None
    if expires_in_s is not None:
        if isinstance(expires_in_s, bool) or not isinstance(expires_in_s, (int, float)) or \
                not 0 < expires_in_s <= MAX_KEY_LIFETIME_S:
            raise ValidationError(f"expires_in_s must be in (0, {MAX_KEY_LIFETIME_S}]")
        expires_at = now_us() + int(expires_in_s * 1_000_000)
    made = new_key()
    info = KeyInfo(id=made.key_id, tenant=tenant_name, role=parsed.label, name=name,
                   key_hash=made.key_hash, created_at=now_us(), expires_at=expires_at,
                   created_by=actor)
    return IssuedKey(await tenants.create_key(info), made.key)


async def revoke_key(tenants: SqlTenants, key_id: object, actor: str | None = None) -> KeyInfo:
    if not isinstance(key_id, str) or not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValidationError("a key id is 12 hex digits")
    return await tenants.revoke_key(key_id, actor)


def key_json(info: KeyInfo) -> dict[str, Any]:
    """A key as shown to admins: never its hash."""
    return {"id": info.id, "tenant": info.tenant, "role": info.role, "name": info.name,
            "created_at": iso(info.created_at), "expires_at": iso(info.expires_at),
            "revoked_at": iso(info.revoked_at), "created_by": info.created_by}


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {"name": tenant.name, "created_at": iso(tenant.created_at),
            "quotas": dict(tenant.quotas)}
