"""A tenant's secrets: sealed on the way into the store, opened only for a call.

``Secrets`` joins the store's ``SqlSecrets`` (ciphertexts only) and the
master key (``faas.secrets.cipher``). Over the API values are write-only:
``put`` takes one, ``meta`` and ``list`` say only names, sizes and times.
``for_call`` is the one way a value comes out, for the sandbox of a call of
a function that lists the names.

A row sealed under a key this process does not hold means the key was
rotated since it loaded it: the key is loaded again (the file-backed key
follows the rotation; ``FAAS_SECRET_KEY`` does not, and the error says so).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from faas.config import Settings
from faas.errors import NotFound, StoreUnavailable, ValidationError
from faas.secrets.cipher import MasterKey, Sealed
from faas.secrets.names import MAX_SECRET_BYTES, MAX_SECRETS_PER_FUNCTION, check_secret_name
from faas.store import Store
from faas.store.secret_store import SealedRow, SecretMeta, SqlSecrets, StaleKey
from faas.tenancy.principal import Principal

#: The value of one secret, by name, as a call carries it.
SecretValue = tuple[str, bytes]


class SecretNotFound(NotFound):
    """A function lists a secret its tenant has not set (the call fails, naming it)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"secret {name!r} is listed by the function but not set")
        self.name = name


def _name(name: str) -> str:
    try:
        return check_secret_name(name)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


async def load_key(settings: Settings, rows: SqlSecrets) -> MasterKey:
    """The master key, after finishing or discarding a rotation cut short."""
    key_ids = await rows.key_ids()
    return await asyncio.to_thread(MasterKey.load, settings, key_ids)


class Secrets:
    def __init__(self, settings: Settings, rows: SqlSecrets, key: MasterKey) -> None:
        self._settings = settings
        self._rows = rows
        self._key = key

    @classmethod
    async def open(cls, settings: Settings, store: Store) -> Secrets:
        return cls(settings, store.secrets, await load_key(settings, store.secrets))

    @property
    def key_id(self) -> str:
        return self._key.key_id

    async def _reload(self, seen: str) -> None:
        """Load the key again after a row showed another one (``seen``): a rotation."""
        if seen == self._key.key_id:
            return
        key = await load_key(self._settings, self._rows)
        if key.key_id != seen:
            raise StoreUnavailable(
                f"the secrets are sealed under master key {seen}, but this server has "
                f"{key.key_id}: set FAAS_SECRET_KEY to the rotated key and restart")
        self._key = key

    async def put(self, principal: Principal, name: str,
                  value: bytes) -> tuple[SecretMeta, bool]:
        """Set the secret (``True``: it was created); the value is sealed before it is stored."""
        _name(name)
        if len(value) > MAX_SECRET_BYTES:
            raise ValidationError(f"a secret holds at most {MAX_SECRET_BYTES} bytes")
        for attempt in (1, 2):
            key = self._key
            sealed = key.seal(principal.tenant, name, value)
            try:
                return await self._rows.put(principal.tenant, name, sealed.ciphertext,
                                            sealed.nonce, sealed.key_id, len(value),
                                            actor=principal.key_id)
            except StaleKey:
                if attempt == 2:
                    raise
                current = await self._rows.key_ids()
                await self._reload(next(iter(current - {key.key_id}), key.key_id))
        raise AssertionError("unreachable")  # pragma: no cover

    async def meta(self, principal: Principal, name: str) -> SecretMeta:
        return await self._rows.get_meta(principal.tenant, _name(name))

    async def list(self, principal: Principal) -> tuple[SecretMeta, ...]:
        return await self._rows.list(principal.tenant)

    async def delete(self, principal: Principal, name: str) -> None:
        await self._rows.delete(principal.tenant, _name(name), actor=principal.key_id)

    async def for_call(self, tenant: str, names: Sequence[str]) -> tuple[SecretValue, ...]:
        """The values of ``names`` for one call of ``tenant``'s function, in that order.

        ``SecretNotFound`` names the first name the tenant has not set;
        ``SecretUnreadable`` one that does not open (never a value).
        """
        if len(names) > MAX_SECRETS_PER_FUNCTION:
            raise ValidationError(f"a call carries at most {MAX_SECRETS_PER_FUNCTION} secrets")
        for name in names:
            _name(name)
        rows = await self._rows.get_values(tenant, names)
        for name in names:
            if name not in rows:
                raise SecretNotFound(name)
        return tuple([(name, await self._open(rows[name])) for name in names])

    async def _open(self, row: SealedRow) -> bytes:
        if row.key_id != self._key.key_id:
            await self._reload(row.key_id)
        return self._key.open(row.tenant, row.name,
                              Sealed(row.ciphertext, row.nonce, row.key_id))


__all__ = ["SecretMeta", "SecretNotFound", "SecretValue", "Secrets", "load_key"]
