"""Group commit for async accepts: calls accepted at the same time share one transaction.

Each ``submit`` waits until its call is committed (the 202 promises it is
stored) and gets its own answer: ``(id, created)`` or the error refusing it
alone (a full queue). While one batch is being written the next gathers, so
under load many accepts share a transaction and, on SQLite, the write lock
is taken once for them instead of once each (the claims and outcomes of the
dispatcher wait for that lock too). A caller that stops waiting does not
withdraw its call: once handed over it is written like the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from faas.errors import FaasError, ShuttingDown
from faas.store.invocation_records import InvocationRecord
from faas.store.invocation_store import SqlInvocations

log = logging.getLogger("faas.invocations")
MAX_BATCH = 256

Pending = tuple[InvocationRecord, str | None, "asyncio.Future[tuple[str, bool]]"]


class Enqueuer:
    def __init__(self, store: SqlInvocations, *, key_ttl_us: int, max_queued: int,
                 max_queued_bytes: int) -> None:
        self._store = store
        self._key_ttl_us = key_ttl_us
        self._max_queued = max_queued
        self._max_queued_bytes = max_queued_bytes
        self._pending: list[Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writing: list[Pending] = []
        self._closing = False
        #: each tenant's queued-calls quota, as its latest call gave it (one entry per
        #: tenant that exists: the tenant of an authenticated caller)
        self._tenant_limits: dict[str, int] = {}

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def submit(self, record: InvocationRecord, idempotency_key: str | None,
                     tenant_max_queued: int | None = None) -> tuple[str, bool]:
        """Queue ``record`` with the batch being gathered; ``tenant_max_queued``: its
        tenant's (``record.tenant``) queued-calls quota, checked in the same transaction."""
        if self._closing or self._task is None or self._task.done():
            raise ShuttingDown("server is shutting down")
        if tenant_max_queued is not None and record.tenant is not None:
            self._tenant_limits[record.tenant] = tenant_max_queued
        done: asyncio.Future[tuple[str, bool]] = asyncio.get_running_loop().create_future()
        self._pending.append((record, idempotency_key, done))
        self._wake.set()
        return await asyncio.shield(done)

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self._writing = batch
                await self._write(batch)
                self._writing = []
            if self._closing:
                return

    async def _write(self, batch: list[Pending]) -> None:
        try:
            answers = await self._store.enqueue_many(
                [(record, key) for record, key, _ in batch], key_ttl_us=self._key_ttl_us,
                max_queued=self._max_queued, max_queued_bytes=self._max_queued_bytes,
                tenant_max_queued=self._tenant_limits)
        except Exception as exc:  # the store failed: every call of the batch is refused
            if not isinstance(exc, FaasError):
                log.exception("queueing %d calls failed", len(batch))
            for _, _, done in batch:
                if not done.done():
                    done.set_exception(exc)
                    done.exception()  # a caller that gave up must not log it unretrieved
            return
        for (_, _, done), answer in zip(batch, answers, strict=True):
            if done.done():
                continue
            if isinstance(answer, FaasError):
                done.set_exception(answer)
                done.exception()
            else:
                done.set_result(answer)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Write what was handed over (within ``timeout_s``; callers still waiting after
        that get ``ShuttingDown``), then stop."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            for _, _, done in [*self._writing, *self._pending]:
                if not done.done():
                    done.set_exception(ShuttingDown("server is shutting down"))
                    done.exception()
        self._task = None
