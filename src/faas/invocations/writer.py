"""Record writes batched off the hot path: one transaction carries many calls' ends.

A sync call's record and an async call's outcome are handed to the writer,
which writes whatever has gathered in one ``settle`` transaction, then the
next batch, and so on: under load many calls share a transaction; idle, a
call's record is written at once. ``end`` returns a future that resolves to
whether the outcome was written (False: the row was no longer running under
this owner, e.g. cancelled). A store that is down is retried with backoff;
meanwhile sync records beyond ``MAX_PENDING`` are dropped (and logged): a
record must not cost the platform its memory. ``close`` writes what is left,
within its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from faas.errors import FaasError
from faas.store.invocation_records import InvocationRecord, Outcome
from faas.store.invocation_store import SqlInvocations

log = logging.getLogger("faas.invocations")
MAX_PENDING = 10_000
MAX_BATCH = 500
RETRY_S = (0.1, 0.5, 1.0, 2.0, 5.0)

Written = Callable[[list[InvocationRecord]], None]


class RecordWriter:
    def __init__(self, store: SqlInvocations, written: Written) -> None:
        """``written(inserts)`` is called after each batch with the batch's inserts (also
        when they could not be written); an outcome's writer learns from ``end``'s future."""
        self._store = store
        self._written = written
        self._inserts: list[InvocationRecord] = []
        self._ends: list[tuple[str, str, Outcome, asyncio.Future[bool]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    def insert(self, record: InvocationRecord) -> bool:
        """Queue a record for writing; False (and counted) when too many are pending."""
        if len(self._inserts) >= MAX_PENDING:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("the store is behind: %d sync records dropped", self.dropped)
            return False
        self._inserts.append(record)
        self._wake.set()
        return True

    def end(self, invocation_id: str, owner: str, outcome: Outcome) -> asyncio.Future[bool]:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._ends.append((invocation_id, owner, outcome, done))
        self._wake.set()
        return done

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._inserts or self._ends:
                try:
                    await self._flush_one()
                except Exception:  # a bug: log it, never stop writing records
                    log.exception("writing records failed")
            if self._closing:
                return

    async def _flush_one(self) -> None:
        inserts, self._inserts = self._inserts[:MAX_BATCH], self._inserts[MAX_BATCH:]
        ends, self._ends = self._ends[:MAX_BATCH], self._ends[MAX_BATCH:]
        for attempt, pause in enumerate((*RETRY_S, None)):
            try:
                written = await self._store.settle([e[:3] for e in ends], inserts)
                break
            except FaasError as exc:
                if pause is None or (self._closing and attempt >= 1):
                    log.error("could not write %d records (%s); giving up on them",
                              len(inserts) + len(ends), exc)
                    written = set()
                    for *_, done in ends:
                        if not done.done():
                            done.set_exception(exc)
                    ends = []
                    break
                log.warning("could not write records (%s); retrying in %gs", exc, pause)
                await asyncio.sleep(pause)
        for invocation_id, _, _, done in ends:
            if not done.done():
                done.set_result(invocation_id in written)
        try:
            self._written(inserts)
        except Exception:
            log.exception("a record listener failed")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Write what is pending (within ``timeout_s``), then stop."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            log.error("records still unwritten at shutdown were dropped")
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
