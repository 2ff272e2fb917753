"""The storage contract every engine implements, and nothing else.

All methods are coroutines and take no deadline: the caller owns it
(``async with asyncio.timeout(...)``). Each method is one transaction, and a
cancelled caller gets its ``CancelledError`` at once while the transaction
finishes whole, or rolls back, in the background: a put whose caller gave up
may still have stored its version, never half of it. Errors are the platform's
(``faas.errors``): ``ValidationError`` for a malformed argument,
``NotFound``, ``Conflict``, ``StoreUnavailable`` when the database cannot be
reached or used (the caller may retry).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from faas.store.invocation_store import SqlInvocations
from faas.store.records import FunctionInfo, FunctionSpec, FunctionVersion, Page
from faas.store.secret_store import SqlSecrets
from faas.store.tenant_store import SqlTenants

#: ``list_functions``' page size when none is asked for, and the largest one it serves.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: The most labels one ``list_functions`` may filter on (each is a subquery).
MAX_LABEL_FILTERS = 16


class Store(Protocol):
    #: Invocation records and the durable async queue (one implementation for both
    #: engines, so its class is the contract: ``faas.store.invocation_store``).
    invocations: SqlInvocations
    #: Tenants, API keys and the audit log (one implementation for both engines, too).
    tenants: SqlTenants
    #: Tenants' secrets, sealed (``faas.secrets`` holds the key; this sees ciphertexts only).
    secrets: SqlSecrets

    async def put_function(self, function_id: str, spec: FunctionSpec) -> FunctionVersion:
        """Store ``spec`` as the function's next version; create the function if needed.

        Versions count 1, 2, 3, ... without gaps, also under concurrent puts.
        A deleted function put again lives again, with the next number after
        its last one (never 1 again): an old number always names the old spec.
        """
        ...

    async def get_function(self, function_id: str) -> FunctionInfo:
        """The live function with its latest version; ``NotFound`` if absent or deleted."""
        ...

    async def get_version(self, function_id: str, version: int) -> FunctionVersion:
        """One version of the live function's current life; ``NotFound`` otherwise."""
        ...

    async def list_functions(self, *, labels: Mapping[str, str] | None = None,
                             limit: int = DEFAULT_PAGE_SIZE,
                             cursor: str | None = None, tenant: str | None = None) -> Page:
        """Live functions ordered by id, ``limit`` (1..MAX_PAGE_SIZE) at a time.

        ``tenant``: only that tenant's functions (qualified ids ``<tenant>/<name>``).

        ``labels``: only functions whose latest version has every one of
        these labels (at most ``MAX_LABEL_FILTERS``). ``cursor``: the
        previous page's ``next_cursor`` (opaque); functions put or deleted
        between pages neither repeat nor shift the pages that follow.
        """
        ...

    async def delete_function(self, function_id: str) -> None:
        """Hide the function: gets and lists stop finding it; ``NotFound`` if already gone.

        Its versions are kept, so calls in flight can still finish and count.
        """
        ...

    async def count_invocation(self, function_id: str, version: int, outcome: str) -> None:
        """Add one invocation with ``outcome`` ("ok", "error", ...) to that version's counts.

        Counts also for a deleted function's versions (calls that were in
        flight); ``NotFound`` only if the version never existed.
        """
        ...

    async def tenant_usage(self, tenant: str, *,
                           excluding: str | None = None) -> tuple[int, int]:
        """``(live functions, sum of their latest versions' packed bundle bytes)`` of
        ``tenant`` (its qualified ids), leaving out the function ``excluding``."""
        ...

    async def close(self) -> None:
        """Release the connections; idempotent. Later calls raise ``StoreUnavailable``."""
        ...
