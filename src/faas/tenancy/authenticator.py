"""Who is calling, from the ``Authorization`` header: a ``Principal``, or ``Unauthenticated``.

A presented key is hashed and looked up by its hash (see ``faas.tenancy.keys``
for why that leaks nothing of how close a wrong key came). Found keys are
kept for ``CACHE_S`` so the hot path does not read the store on every call:
a key revoked on this server stops working at once (``forget``); revoked on
another server sharing the store, within ``CACHE_S``. Expiry is checked on
every request.

Open mode: a server with no usable key at all, allowed to run open
(``open_allowed``: bound to loopback, or ``--insecure``), treats a request
without a key as the default tenant's admin. The first key created ends
open mode (within ``CACHE_S`` when created elsewhere, e.g. by
``faas admin create-key`` on the store).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Protocol

from faas.errors import Unauthenticated
from faas.store.tenant_records import KeyInfo
from faas.store.tenant_store import now_us
from faas.tenancy.keys import hash_key, presented_key
from faas.tenancy.principal import OPEN, Principal, Role

CACHE_S = 1.0
MAX_CACHED = 10_000
#: What every refused key is told: never whether the key exists, was revoked or expired.
REFUSED = "missing or invalid API key (Authorization: Bearer <key>)"


class KeyLookup(Protocol):
    """What authentication needs of the store (``SqlTenants`` has it)."""

    async def key_by_hash(self, key_hash: bytes) -> KeyInfo | None: ...

    async def usable_keys(self) -> int: ...


class Authenticator:
    def __init__(self, tenants: KeyLookup | None, open_allowed: bool) -> None:
        self._tenants = tenants
        self.open_allowed = open_allowed
        self._cache: dict[bytes, tuple[KeyInfo, float]] = {}
        self._open_checked = -CACHE_S
        self._open = False
        self._lock = asyncio.Lock()

    async def is_open(self) -> bool:
        """Whether a request without a key is let in (as ``OPEN``) now."""
        if not self.open_allowed:
            return False
        if self._tenants is None:
            return True
        now = time.monotonic()
        if now - self._open_checked >= CACHE_S:
            async with self._lock:
                if now - self._open_checked >= CACHE_S:
                    self._open = await self._tenants.usable_keys() == 0
                    self._open_checked = time.monotonic()
        return self._open

    async def authenticate(self, authorization: str | None) -> Principal:
        if authorization is None and await self.is_open():
            return OPEN
        key = presented_key(authorization)
        if key is None or self._tenants is None:
            raise Unauthenticated(REFUSED)
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < CACHE_S:
            found: KeyInfo | None = cached[0]
        else:
            found = await self._tenants.key_by_hash(digest)
            if found is not None:
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
                self._cache[digest] = (found, now)
        if found is None or not hmac.compare_digest(found.key_hash, digest) \
                or not found.usable(now_us()):
            raise Unauthenticated(REFUSED)
        return Principal(found.tenant, Role.parse(found.role), found.id)

    def forget(self, key_id: str) -> None:
        """A key changed (revoked): drop what is cached of it, so it stops working now."""
        for digest, (info, _) in list(self._cache.items()):
            if info.id == key_id:
                del self._cache[digest]

    def keys_changed(self) -> None:
        """A key was created or revoked here: re-check open mode on the next request."""
        self._open_checked = -CACHE_S
