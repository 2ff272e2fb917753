"""Tenants, API keys and the audit log, on the store's engines.

Each method is one transaction run through the store's shield (see
``SqlStore``). Keys are found by the hash of the presented key
(``key_by_hash``); revoking one is a single update that every later lookup
sees. Names are checked by the callers (``faas.tenancy``); this module
trusts its arguments' shapes and only keeps them consistent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson
from sqlalchemy import Row, and_, func, or_, select, update

from faas.errors import Conflict, NotFound
from faas.store.invocation_rows import InvocationTransactions
from faas.store.tables import api_keys, audit_log, tenants
from faas.store.tenant_records import (
    MAX_AUDIT_DETAIL,
    MAX_AUDIT_PAGE,
    AuditEntry,
    AuditPage,
    KeyInfo,
    Tenant,
    decode_audit_cursor,
    encode_audit_cursor,
)


def now_us() -> int:
    return time.time_ns() // 1000


async def insert_audit(conn: Any, tenant: str, actor: str | None, action: str, target: str,
                       detail: str | None = None) -> None:
    """One audit entry, in the caller's transaction (so it commits with what it records)."""
    await conn.execute(audit_log.insert().values(
        id=uuid.uuid4().hex, at=now_us(), tenant=tenant, actor=actor, action=action,
        target=target[:200], detail=None if detail is None else detail[:MAX_AUDIT_DETAIL]))


def _tenant(row: Row[Any]) -> Tenant:
    return Tenant(row.name, row.created_at, MappingProxyType(orjson.loads(row.quotas)))


def _key(row: Row[Any]) -> KeyInfo:
    values = dict(row._mapping)
    values["key_hash"] = bytes(values["key_hash"])
    return KeyInfo(**values)


class SqlTenants(InvocationTransactions):
    # -- tenants ---------------------------------------------------------------------------

    async def create_tenant(self, name: str, quotas: Mapping[str, Any] | None = None,
                            actor: str | None = None) -> Tenant:
        """A new tenant; ``Conflict`` if the name is taken."""
        tenant = Tenant(name, now_us(), MappingProxyType(dict(quotas or {})))

        async def work(conn: Any) -> Tenant:
            exists = (await conn.execute(select(tenants.c.name).where(
                tenants.c.name == name))).first()
            if exists is not None:
                raise Conflict(f"tenant {name!r} already exists")
            await conn.execute(tenants.insert().values(
                name=name, created_at=tenant.created_at,
                quotas=orjson.dumps(dict(tenant.quotas)).decode()))
            await self._audit(conn, name, actor, "tenant.create", name)
            return tenant
        return await self._write(work)

    async def get_tenant(self, name: str) -> Tenant:
        async def work(conn: Any) -> Tenant:
            row = (await conn.execute(select(tenants).where(tenants.c.name == name))).first()
            if row is None:
                raise NotFound(f"no tenant {name!r}")
            return _tenant(row)
        return await self._read(work)

    async def list_tenants(self, limit: int = 1000) -> tuple[Tenant, ...]:
        async def work(conn: Any) -> tuple[Tenant, ...]:
            rows = await conn.execute(select(tenants).order_by(tenants.c.name).limit(limit))
            return tuple(_tenant(row) for row in rows)
        return await self._read(work)

    async def set_quotas(self, name: str, quotas: Mapping[str, Any],
                         actor: str | None = None) -> Tenant:
        """Replace the tenant's quota overrides; ``NotFound`` if there is no such tenant."""
        async def work(conn: Any) -> Tenant:
            done = await conn.execute(update(tenants).where(tenants.c.name == name).values(
                quotas=orjson.dumps(dict(quotas)).decode()))
            if done.rowcount == 0:
                raise NotFound(f"no tenant {name!r}")
            await self._audit(conn, name, actor, "tenant.quotas", name,
                              orjson.dumps(dict(quotas)).decode())
            row = (await conn.execute(select(tenants).where(tenants.c.name == name))).one()
            return _tenant(row)
        return await self._write(work)

    # -- keys ------------------------------------------------------------------------------

    async def create_key(self, key: KeyInfo) -> KeyInfo:
        """Store a new key (its hash); ``NotFound`` if its tenant does not exist."""
        async def work(conn: Any) -> KeyInfo:
            exists = (await conn.execute(select(tenants.c.name).where(
                tenants.c.name == key.tenant))).first()
            if exists is None:
                raise NotFound(f"no tenant {key.tenant!r}")
            await conn.execute(api_keys.insert().values(
                id=key.id, tenant=key.tenant, role=key.role, name=key.name,
                key_hash=key.key_hash, created_at=key.created_at, expires_at=key.expires_at,
                revoked_at=None, created_by=key.created_by))
            await self._audit(conn, key.tenant, key.created_by, "key.create", key.id,
                              f"role={key.role} name={key.name}")
            return key
        return await self._write(work)

    async def key_by_hash(self, key_hash: bytes) -> KeyInfo | None:
        """The key whose hash this is (revoked and expired ones too), or None."""
        async def work(conn: Any) -> KeyInfo | None:
            row = (await conn.execute(select(api_keys).where(
                api_keys.c.key_hash == key_hash))).first()
            return None if row is None else _key(row)
        return await self._read(work)

    async def list_keys(self, tenant: str | None = None) -> tuple[KeyInfo, ...]:
        async def work(conn: Any) -> tuple[KeyInfo, ...]:
            query = select(api_keys).order_by(api_keys.c.tenant, api_keys.c.id)
            if tenant is not None:
                query = query.where(api_keys.c.tenant == tenant)
            return tuple(_key(row) for row in await conn.execute(query.limit(10_000)))
        return await self._read(work)

    async def revoke_key(self, key_id: str, actor: str | None = None) -> KeyInfo:
        """Revoke at once (later lookups find it revoked); ``NotFound`` if unknown."""
        async def work(conn: Any) -> KeyInfo:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
            if row is None:
                raise NotFound(f"no key {key_id!r}")
            key = _key(row)
            if key.revoked_at is None:
                await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(
                    revoked_at=now_us()))
                await self._audit(conn, key.tenant, actor, "key.revoke", key_id)
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).one()
            return _key(row)
        return await self._write(work)

    async def usable_keys(self) -> int:
        """How many keys could authenticate now (none: the server may run open)."""
        now = now_us()

        async def work(conn: Any) -> int:
            count = (await conn.execute(select(func.count()).select_from(api_keys).where(
                api_keys.c.revoked_at.is_(None),
                or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now)))).scalar()
            return int(count or 0)
        return await self._read(work)

    # -- audit -----------------------------------------------------------------------------

    async def audit(self, tenant: str, actor: str | None, action: str, target: str,
                    detail: str | None = None) -> None:
        async def work(conn: Any) -> None:
            await self._audit(conn, tenant, actor, action, target, detail)
        await self._write(work)

    async def _audit(self, conn: Any, tenant: str, actor: str | None, action: str,
                     target: str, detail: str | None = None) -> None:
        await insert_audit(conn, tenant, actor, action, target, detail)

    async def list_audit(self, *, tenant: str | None = None, since: int | None = None,
                         limit: int = 50, cursor: str | None = None) -> AuditPage:
        """Entries newest first, ``limit`` (1..MAX_AUDIT_PAGE) at a time."""
        limit = max(1, min(limit, MAX_AUDIT_PAGE))
        query = select(audit_log).order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
        if tenant is not None:
            query = query.where(audit_log.c.tenant == tenant)
        if since is not None:
            query = query.where(audit_log.c.at >= since)
        if cursor is not None:
            at, entry_id = decode_audit_cursor(cursor)
            query = query.where(or_(audit_log.c.at < at,
                                    and_(audit_log.c.at == at, audit_log.c.id < entry_id)))

        async def work(conn: Any) -> AuditPage:
            rows = list(await conn.execute(query.limit(limit + 1)))
            items = tuple(AuditEntry(**dict(row._mapping)) for row in rows[:limit])
            more = len(rows) > limit
            return AuditPage(items, encode_audit_cursor(items[-1].at, items[-1].id)
                             if more else None)
        return await self._read(work)


