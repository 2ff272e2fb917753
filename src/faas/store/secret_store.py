"""A tenant's secrets, sealed by the caller (``faas.secrets``): this module never sees a
value, only ciphertexts, nonces and the id of the key that sealed them.

Each method is one transaction run through the store's shield (see
``SqlStore``); every write adds its audit entry in the same transaction.
Names are checked by the callers; this module keeps rows consistent.

A put carries the id of the key its value was sealed under. If, once its
row is written, any row carries another key id, a rotation committed in the
meantime: the put rolls back with ``StaleKey`` and the caller reloads the
key, so no row is ever left under a key that is no longer kept. (On
PostgreSQL ``rotate`` locks the table first, so a put waits for it and then
sees its rows.)
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, delete, select, text, update

from faas.errors import Conflict, NotFound
from faas.store.invocation_rows import InvocationTransactions
from faas.store.tables import secrets
from faas.store.tenant_store import insert_audit, now_us

_META = (secrets.c.name, secrets.c.size, secrets.c.created_at, secrets.c.updated_at)
_SEALED = (secrets.c.tenant, secrets.c.name, secrets.c.ciphertext, secrets.c.nonce,
           secrets.c.key_id)


class StaleKey(Conflict):
    """The rows were re-encrypted under another master key meanwhile: reload it."""


@dataclass(frozen=True, slots=True)
class SecretMeta:
    """What may be said of a secret: never its value."""

    name: str
    size: int
    created_at: int  # microseconds since the epoch
    updated_at: int


@dataclass(frozen=True, slots=True)
class SealedRow:
    tenant: str
    name: str
    ciphertext: bytes
    nonce: bytes
    key_id: str


#: A rotation's work on one row: its new (ciphertext, nonce, key_id), or None to keep it.
Reseal = Callable[[SealedRow], tuple[bytes, bytes, str] | None]


def _meta(row: Row[Any]) -> SecretMeta:
    return SecretMeta(row.name, row.size, row.created_at, row.updated_at)


def _sealed(row: Row[Any]) -> SealedRow:
    return SealedRow(row.tenant, row.name, bytes(row.ciphertext), bytes(row.nonce), row.key_id)


class SqlSecrets(InvocationTransactions):
    async def put(self, tenant: str, name: str, ciphertext: bytes, nonce: bytes, key_id: str,
                  size: int, actor: str | None = None) -> tuple[SecretMeta, bool]:
        """Create or replace the secret; its metadata and whether it was created."""
        now = now_us()
        where = (secrets.c.tenant == tenant, secrets.c.name == name)

        async def work(conn: Any) -> tuple[SecretMeta, bool]:
            old = (await conn.execute(select(secrets.c.created_at).where(*where))).first()
            values = {"ciphertext": ciphertext, "nonce": nonce, "key_id": key_id,
                      "size": size, "updated_at": now}
            if old is None:
                await conn.execute(secrets.insert().values(
                    tenant=tenant, name=name, created_at=now, **values))
            else:
                await conn.execute(update(secrets).where(*where).values(**values))
            other = (await conn.execute(select(secrets.c.key_id).where(
                secrets.c.key_id != key_id).limit(1))).first()
            if other is not None:
                raise StaleKey("the secrets were re-encrypted under another master key")
            await insert_audit(conn, tenant, actor, "secret.set", name, f"size={size}")
            row = (await conn.execute(select(*_META).where(*where))).one()
            return _meta(row), old is None
        return await self._write(work)

    async def get_meta(self, tenant: str, name: str) -> SecretMeta:
        """The secret's metadata; ``NotFound`` if the tenant has none of that name."""
        async def work(conn: Any) -> SecretMeta:
            row = (await conn.execute(select(*_META).where(
                secrets.c.tenant == tenant, secrets.c.name == name))).first()
            if row is None:
                raise NotFound(f"no secret {name!r}")
            return _meta(row)
        return await self._read(work)

    async def list(self, tenant: str, limit: int = 10_000) -> tuple[SecretMeta, ...]:
        async def work(conn: Any) -> tuple[SecretMeta, ...]:
            rows = await conn.execute(select(*_META).where(secrets.c.tenant == tenant)
                                      .order_by(secrets.c.name).limit(limit))
            return tuple(_meta(row) for row in rows)
        return await self._read(work)

    async def delete(self, tenant: str, name: str, actor: str | None = None) -> None:
        """Delete the secret; ``NotFound`` if there is none."""
        async def work(conn: Any) -> None:
            done = await conn.execute(delete(secrets).where(
                secrets.c.tenant == tenant, secrets.c.name == name))
            if done.rowcount == 0:
                raise NotFound(f"no secret {name!r}")
            await insert_audit(conn, tenant, actor, "secret.delete", name)
        await self._write(work)

    async def get_values(self, tenant: str, names: Collection[str]) -> dict[str, SealedRow]:
        """The sealed rows of those of ``names`` the tenant has (missing ones are absent)."""
        if not names:
            return {}

        async def work(conn: Any) -> dict[str, SealedRow]:
            rows = await conn.execute(select(*_SEALED).where(
                secrets.c.tenant == tenant, secrets.c.name.in_(list(names))))
            return {row.name: _sealed(row) for row in rows}
        return await self._read(work)

    async def key_ids(self) -> frozenset[str]:
        """The key ids the rows carry (normally one, or none)."""
        async def work(conn: Any) -> frozenset[str]:
            rows = await conn.execute(select(secrets.c.key_id).distinct())
            return frozenset(row.key_id for row in rows)
        return await self._read(work)

    async def rotate(self, reseal: Reseal, actor: str | None = None) -> int:
        """Re-seal every row in one transaction (all or none); how many rows changed.

        ``reseal`` raising aborts the whole rotation.
        """
        async def work(conn: Any) -> int:
            if self._target.engine == "postgresql":
                await conn.execute(text("LOCK TABLE secrets IN EXCLUSIVE MODE"))
            rows = [_sealed(row) for row in await conn.execute(
                select(*_SEALED).order_by(secrets.c.tenant, secrets.c.name))]
            per_tenant: dict[str, int] = {}
            for row in rows:
                new = reseal(row)
                if new is None:
                    continue
                ciphertext, nonce, key_id = new
                await conn.execute(update(secrets).where(
                    secrets.c.tenant == row.tenant, secrets.c.name == row.name).values(
                    ciphertext=ciphertext, nonce=nonce, key_id=key_id))
                per_tenant[row.tenant] = per_tenant.get(row.tenant, 0) + 1
            for tenant, count in per_tenant.items():
                await insert_audit(conn, tenant, actor, "secret.rotate", "*",
                                   f"{count} secrets re-encrypted")
            return sum(per_tenant.values())
        return await self._write(work)
