"""Invocation records and the durable async queue, on the store's engines.

Each method is one transaction (run by the store's shield: a caller that
stops waiting never cuts one in half). The queue is the ``invocations``
table itself: an async call is inserted ``queued``; ``claim`` moves the
oldest claimable ones to ``running`` under an owner in one transaction
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's writer lock serialises
claimers), so two claimers never take the same call; ``finish`` writes the
outcome only over a row still ``running`` under the same owner, so a call
cancelled or recovered meanwhile keeps that state.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.engine import Row

from faas.errors import AdmissionRejected, Conflict, NotFound, ValidationError
from faas.store.engine import Engines, database_errors
from faas.store.invocation_records import (
    CALLBACK_PENDING,
    CANCELLED,
    ERROR,
    MAX_RECORD_PAGE,
    QUEUED,
    RUNNING,
    InvocationPage,
    InvocationRecord,
    Outcome,
    Recovered,
    check_invocation_id,
    check_status,
    decode_record_cursor,
    encode_record_cursor,
)
from faas.store.tables import idempotency_keys, invocations
from faas.store.url import DatabaseTarget

T = TypeVar("T")
Shield = Callable[[Coroutine[Any, Any, Any]], Coroutine[Any, Any, Any]]
_FIELDS = tuple(f.name for f in fields(InvocationRecord))
_FLAGS = ("retry_timeouts", "retry_failures", "stdout_truncated", "stderr_truncated")
#: How many queued rows one claim looks at for each call it may take (per-function caps skip some).
_CLAIM_WINDOW = 4
#: How long a callback handed to a sender is not handed out again (it is being delivered).
CALLBACK_LEASE_US = 60_000_000
#: Rows deleted per statement when pruning.
_PRUNE_BATCH = 1000
_INSERT = invocations.insert()
_COUNT_QUEUED = select(func.count()).select_from(invocations).where(
    invocations.c.status == QUEUED)
_QUEUE_SIZE = select(func.count(), func.coalesce(func.sum(invocations.c.request_bytes), 0)
                     ).where(invocations.c.status == QUEUED)


def now_us() -> int:
    return time.time_ns() // 1000


def _row(record: InvocationRecord) -> dict[str, Any]:
    row = {name: getattr(record, name) for name in _FIELDS}
    for flag in _FLAGS:
        row[flag] = int(row[flag])
    return row


def _record(row: Row[Any]) -> InvocationRecord:
    values = dict(row._mapping)
    for flag in _FLAGS:
        values[flag] = bool(values[flag])
    values["stdout"] = bytes(values["stdout"] or b"")
    values["stderr"] = bytes(values["stderr"] or b"")
    if values["request"] is not None:
        values["request"] = bytes(values["request"])
    return InvocationRecord(**values)


def _ended(finished_at: int) -> dict[str, Any]:
    """What every transition to a final status also sets: the callback becomes due."""
    return {"finished_at": finished_at, "request": None, "owner": None,
            "callback_state": case((invocations.c.callback_url.is_not(None), CALLBACK_PENDING),
                                   else_=None),
            "callback_next_at": case((invocations.c.callback_url.is_not(None), finished_at),
                                     else_=None)}


class SqlInvocations:
    """``InvocationStore`` on one database; reached as ``store.invocations``."""

    def __init__(self, target: DatabaseTarget, engines: Engines, shield: Shield) -> None:
        self._target = target
        self._engines = engines
        self._shield = shield

    async def _write(self, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        async def run() -> T:
            async with database_errors(self._target), self._engines.begin_write() as conn:
                return await work(conn)
        result: T = await self._shield(run())
        return result

    async def _read(self, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        async def run() -> T:
            async with database_errors(self._target), self._engines.read.begin() as conn:
                return await work(conn)
        result: T = await self._shield(run())
        return result

    async def enqueue(self, record: InvocationRecord, *, idempotency_key: str | None = None,
                      key_ttl_us: int = 0, max_queued: int,
                      max_queued_bytes: int | None = None) -> tuple[str, bool]:
        """Insert a queued call; return ``(id, True)``, or ``(first id, False)`` for a key
        already used for this function within its time to live (nothing is inserted).

        ``AdmissionRejected`` when ``max_queued`` calls are already queued, or when this
        call's ``request`` would take the queued requests past ``max_queued_bytes``.
        """
        check_invocation_id(record.id)
        if record.status != QUEUED:
            raise ValidationError("an enqueued call is queued")
        size = len(record.request or b"")
        record = dataclasses.replace(record, request_bytes=size)

        async def put(conn: Any) -> tuple[str, bool]:
            now = now_us()
            if idempotency_key is not None:
                key = and_(idempotency_keys.c.function_id == record.function_id,
                           idempotency_keys.c.idempotency_key == idempotency_key)
                found = (await conn.execute(select(
                    idempotency_keys.c.invocation_id, idempotency_keys.c.expires_at)
                    .where(key))).one_or_none()
                if found is not None and found.expires_at > now:
                    return str(found.invocation_id), False
                if found is not None:
                    await conn.execute(delete(idempotency_keys).where(key))
            queued, queued_bytes = (await conn.execute(_QUEUE_SIZE)).one()
            if queued >= max_queued or (max_queued_bytes is not None
                                        and queued_bytes + size > max_queued_bytes):
                raise AdmissionRejected(
                    f"the asynchronous queue is full ({queued} calls, {queued_bytes} bytes "
                    "queued); retry later", retry_after_s=5)
            await conn.execute(_INSERT, _row(record))  # not .values(): its cache key costs
            if idempotency_key is not None:
                await conn.execute(idempotency_keys.insert().values(
                    function_id=record.function_id, idempotency_key=idempotency_key,
                    invocation_id=record.id, expires_at=now + key_ttl_us))
            return record.id, True

        for attempt in range(3):
            try:
                return await self._write(put)
            except Conflict:
                # Two first uses of one key raced (PostgreSQL, READ COMMITTED): the loser
                # sees the winner's key on the next try.
                if idempotency_key is None or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def claim(self, owner: str, limit: int, *, busy: Collection[str] = (),
                    running: Mapping[str, int] | None = None) -> list[InvocationRecord]:
        """Move up to ``limit`` of the oldest claimable queued calls to ``running`` under
        ``owner`` (attempts + 1) and return them.

        ``busy``: functions at their concurrency cap (skipped); ``running``: calls of each
        function already running, so that one claim does not exceed a function's
        ``concurrency_cap`` either.
        """
        if limit < 1:
            return []
        counts = dict(running or {})

        async def take(conn: Any) -> list[InvocationRecord]:
            now = now_us()
            query = (select(invocations.c.id, invocations.c.function_id,
                            invocations.c.concurrency_cap)
                     .where(invocations.c.status == QUEUED, invocations.c.not_before <= now)
                     .order_by(invocations.c.accepted_at, invocations.c.id)
                     .limit(limit * _CLAIM_WINDOW).with_for_update(skip_locked=True))
            if busy:
                query = query.where(invocations.c.function_id.not_in(list(busy)))
            chosen: list[str] = []
            for row in await conn.execute(query):
                cap = row.concurrency_cap
                if cap is not None and counts.get(row.function_id, 0) >= cap:
                    continue
                counts[row.function_id] = counts.get(row.function_id, 0) + 1
                chosen.append(row.id)
                if len(chosen) == limit:
                    break
            if not chosen:
                return []
            rows = await conn.execute(
                update(invocations).where(invocations.c.id.in_(chosen),
                                          invocations.c.status == QUEUED)
                .values(status=RUNNING, owner=owner, started_at=now,
                        attempts=invocations.c.attempts + 1)
                .returning(*invocations.c))
            taken = [_record(row) for row in rows]
            return sorted(taken, key=lambda r: (r.accepted_at, r.id))

        return await self._write(take)

    async def settle(self, ends: Sequence[tuple[str, str, Outcome]],
                     inserts: Sequence[InvocationRecord] = ()) -> set[str]:
        """In one transaction: insert ``inserts`` (records of sync calls that ended) and
        write each ``(id, owner, outcome)`` over a row still running under that owner;
        return the ids written (a call cancelled or recovered meanwhile is left alone)."""
        if not ends and not inserts:
            return set()

        async def write(conn: Any) -> set[str]:
            if inserts:
                await conn.execute(_INSERT, [_row(r) for r in inserts])
            done: set[str] = set()
            for invocation_id, owner, outcome in ends:
                values = {name: getattr(outcome, name) for name in (
                    "status", "executor", "start_kind", "start_ms", "duration_ms",
                    "exit_code", "signal", "error", "stdout", "stderr")}
                values["stdout_truncated"] = int(outcome.stdout_truncated)
                values["stderr_truncated"] = int(outcome.stderr_truncated)
                result = await conn.execute(
                    update(invocations).where(invocations.c.id == invocation_id,
                                              invocations.c.status == RUNNING,
                                              invocations.c.owner == owner)
                    .values(**values, **_ended(outcome.finished_at)))
                if result.rowcount == 1:
                    done.add(invocation_id)
            return done

        return await self._write(write)

    async def requeue(self, invocation_id: str, owner: str, *, not_before: int,
                      error: str | None, refund: bool = False) -> bool:
        """Put a call this owner runs back in the queue (to be retried after ``not_before``);
        ``refund``: it never started, its attempt does not count."""
        async def write(conn: Any) -> bool:
            attempts = invocations.c.attempts - (1 if refund else 0)
            result = await conn.execute(
                update(invocations).where(invocations.c.id == invocation_id,
                                          invocations.c.status == RUNNING,
                                          invocations.c.owner == owner)
                .values(status=QUEUED, owner=None, not_before=not_before, error=error,
                        attempts=attempts))
            return bool(result.rowcount == 1)

        return await self._write(write)

    async def cancel(self, invocation_id: str) -> tuple[InvocationRecord, str]:
        """Cancel a queued or running call: return the cancelled record and the status it
        had (the owner of a running one kills its sandbox). ``Conflict`` if it is final."""
        check_invocation_id(invocation_id)

        async def write(conn: Any) -> tuple[InvocationRecord, str]:
            row = (await conn.execute(select(invocations.c.status).where(
                invocations.c.id == invocation_id).with_for_update())).one_or_none()
            if row is None:
                raise NotFound(f"no invocation {invocation_id}")
            if row.status not in (QUEUED, RUNNING):
                raise Conflict(f"the invocation already ended ({row.status})")
            updated = (await conn.execute(
                update(invocations).where(invocations.c.id == invocation_id,
                                          invocations.c.status == row.status)
                .values(status=CANCELLED, error="cancelled by a DELETE of the invocation",
                        **_ended(now_us()))
                .returning(*invocations.c))).one()
            return _record(updated), str(row.status)

        return await self._write(write)

    async def get(self, invocation_id: str) -> InvocationRecord:
        check_invocation_id(invocation_id)

        async def read(conn: Any) -> InvocationRecord:
            row = (await conn.execute(select(invocations).where(
                invocations.c.id == invocation_id))).one_or_none()
            if row is None:
                raise NotFound(f"no invocation {invocation_id}")
            return _record(row)

        return await self._read(read)

    async def list_records(self, *, function_id: str | None = None, status: str | None = None,
                   since: int | None = None, limit: int = 50,
                   cursor: str | None = None) -> InvocationPage:
        """Records newest first (by acceptance), ``limit`` (1..MAX_RECORD_PAGE) at a time;
        output columns are left out (empty)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not (
                1 <= limit <= MAX_RECORD_PAGE):
            raise ValidationError(f"limit must be an integer from 1 to {MAX_RECORD_PAGE}")
        columns = [c for c in invocations.c if c.name not in ("stdout", "stderr", "request")]
        query = select(*columns)
        if function_id is not None:
            query = query.where(invocations.c.function_id == function_id)
        if status is not None:
            query = query.where(invocations.c.status == check_status(status))
        if since is not None:
            query = query.where(invocations.c.accepted_at >= since)
        if cursor is not None:
            when, last = decode_record_cursor(cursor)
            query = query.where(or_(invocations.c.accepted_at < when,
                                    and_(invocations.c.accepted_at == when,
                                         invocations.c.id < last)))
        query = query.order_by(invocations.c.accepted_at.desc(),
                               invocations.c.id.desc()).limit(limit + 1)

        async def read(conn: Any) -> InvocationPage:
            rows = (await conn.execute(query)).all()
            items = tuple(InvocationRecord(**{
                **dict(row._mapping), "stdout": b"", "stderr": b"", "request": None,
                **{flag: bool(row._mapping[flag]) for flag in _FLAGS}}) for row in rows[:limit])
            more = len(rows) > limit
            return InvocationPage(items, encode_record_cursor(items[-1].accepted_at, items[-1].id)
                                  if more else None)

        return await self._read(read)

    async def recover(self, is_gone: Callable[[str], bool], error: str) -> Recovered:
        """Calls left ``running`` by owners that ``is_gone``: back to the queue while they
        have attempts left, else ``error`` (status "error", message ``error``)."""
        async def write(conn: Any) -> Recovered:
            rows = (await conn.execute(select(
                invocations.c.id, invocations.c.owner, invocations.c.attempts,
                invocations.c.max_attempts).where(invocations.c.status == RUNNING)
                .with_for_update())).all()
            requeued, failed = [], []
            now = now_us()
            for row in rows:
                if row.owner is not None and not is_gone(row.owner):
                    continue
                if row.attempts < row.max_attempts:
                    await conn.execute(update(invocations).where(
                        invocations.c.id == row.id, invocations.c.status == RUNNING).values(
                        status=QUEUED, owner=None, not_before=now, error=error))
                    requeued.append(row.id)
                else:
                    await conn.execute(update(invocations).where(
                        invocations.c.id == row.id, invocations.c.status == RUNNING).values(
                        status=ERROR, error=error, **_ended(now)))
                    failed.append(row.id)
            return Recovered(tuple(requeued), tuple(failed))

        return await self._write(write)

    async def prune(self, finished_before: int) -> int:
        """Delete records finished before ``finished_before`` and expired idempotency keys."""
        async def write(conn: Any) -> int:
            old = (select(invocations.c.id).where(invocations.c.finished_at < finished_before)
                   .limit(_PRUNE_BATCH))
            removed = (await conn.execute(delete(invocations).where(
                invocations.c.id.in_(old)))).rowcount
            await conn.execute(delete(idempotency_keys).where(
                idempotency_keys.c.expires_at < now_us()))
            return int(removed)

        total = 0
        while True:
            removed = await self._write(write)
            total += removed
            if removed < _PRUNE_BATCH:
                return total

    async def due_callbacks(self, now: int, limit: int) -> list[InvocationRecord]:
        """Up to ``limit`` records whose callback is due at ``now``, leased for
        ``CALLBACK_LEASE_US`` (not handed out again meanwhile)."""
        async def take(conn: Any) -> list[InvocationRecord]:
            ids = [row.id for row in await conn.execute(
                select(invocations.c.id).where(invocations.c.callback_state == CALLBACK_PENDING,
                                               invocations.c.callback_next_at <= now)
                .order_by(invocations.c.callback_next_at).limit(limit)
                .with_for_update(skip_locked=True))]
            if not ids:
                return []
            rows = await conn.execute(
                update(invocations).where(invocations.c.id.in_(ids))
                .values(callback_next_at=now + CALLBACK_LEASE_US).returning(*invocations.c))
            return [_record(row) for row in rows]

        return await self._write(take)

    async def callback_outcome(self, invocation_id: str, *, state: str, attempts: int,
                               next_at: int | None, error: str | None,
                               delivered_at: int | None) -> None:
        async def write(conn: Any) -> None:
            await conn.execute(update(invocations).where(invocations.c.id == invocation_id)
                               .values(callback_state=state, callback_attempts=attempts,
                                       callback_next_at=next_at, callback_error=error,
                                       callback_delivered_at=delivered_at))

        await self._write(write)

    async def queued_count(self) -> int:
        async def read(conn: Any) -> int:
            return int((await conn.execute(_COUNT_QUEUED)).scalar_one())

        return await self._read(read)

