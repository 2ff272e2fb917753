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
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from faas.errors import AdmissionRejected, Conflict, FaasError, NotFound, ValidationError
from faas.store.invocation_records import (
    CANCELLED,
    MAX_RECORD_PAGE,
    QUEUED,
    RUNNING,
    InvocationPage,
    InvocationRecord,
    Outcome,
    check_invocation_id,
    check_status,
    decode_record_cursor,
    encode_record_cursor,
    now_us,
)
from faas.store.invocation_rows import (
    CLAIM_WINDOW,
    FLAGS,
    INSERT,
    INSERT_KEY,
    OUTCOME_COLUMNS,
    QUEUE_SIZE,
    SETTLE,
    ended_values,
    to_record,
    to_row,
)
from faas.store.invocation_upkeep import InvocationUpkeep
from faas.store.tables import idempotency_keys, invocations


def _tenant_of(function_id: str) -> str | None:
    """The tenant a qualified id ``<tenant>/<name>`` names (``faas.tenancy.principal``)."""
    tenant, separator, _ = function_id.partition("/")
    return tenant if separator else None


class SqlInvocations(InvocationUpkeep):
    """``InvocationStore`` on one database; reached as ``store.invocations``."""

    async def enqueue(self, record: InvocationRecord, *, idempotency_key: str | None = None,
                      key_ttl_us: int = 0, max_queued: int,
                      max_queued_bytes: int | None = None,
                      tenant_max_queued: Mapping[str, int] | None = None) -> tuple[str, bool]:
        """Insert a queued call; return ``(id, True)``, or ``(first id, False)`` for a key
        already used for this function within its time to live (nothing is inserted).

        ``AdmissionRejected`` when ``max_queued`` calls are already queued, or when this
        call's ``request`` would take the queued requests past ``max_queued_bytes``, or
        when its tenant already has ``tenant_max_queued[tenant]`` calls queued.
        """
        [answer] = await self.enqueue_many(
            [(record, idempotency_key)], key_ttl_us=key_ttl_us, max_queued=max_queued,
            max_queued_bytes=max_queued_bytes, tenant_max_queued=tenant_max_queued)
        if isinstance(answer, FaasError):
            raise answer
        return answer

    async def enqueue_many(self, calls: Sequence[tuple[InvocationRecord, str | None]], *,
                           key_ttl_us: int = 0, max_queued: int,
                           max_queued_bytes: int | None = None,
                           tenant_max_queued: Mapping[str, int] | None = None
                           ) -> list[tuple[str, bool] | FaasError]:
        """``enqueue`` for many calls in one transaction (group commit): one answer per
        call, in order, each an ``(id, created)`` or the error refusing that call alone.
        A key repeated within the batch answers the batch's first call of it.

        Each record is stored with its tenant (the record's, else the one its qualified
        function id names); ``tenant_max_queued`` bounds each listed tenant's queued
        calls, counted in the same transaction as the global bound."""
        records = []
        for record, _ in calls:
            check_invocation_id(record.id)
            if record.status != QUEUED:
                raise ValidationError("an enqueued call is queued")
            records.append(dataclasses.replace(
                record, request_bytes=len(record.request or b""),
                tenant=record.tenant or _tenant_of(record.function_id)))
        limits = dict(tenant_max_queued or {})

        async def put(conn: Any) -> list[tuple[str, bool] | FaasError]:
            now = now_us()
            queued, queued_bytes = (await conn.execute(QUEUE_SIZE)).one()
            per_tenant = await self._queued_of(
                conn, {r.tenant for r in records if r.tenant in limits})
            answers: list[tuple[str, bool] | FaasError] = []
            rows: list[dict[str, Any]] = []
            keys: list[dict[str, Any]] = []
            taken: dict[tuple[str, str], str] = {}
            for record, (_, idempotency_key) in zip(records, calls, strict=True):
                if idempotency_key is not None:
                    first = taken.get((record.function_id, idempotency_key))
                    if first is None:
                        first = await self._live_key(conn, record.function_id,
                                                     idempotency_key, now)
                    if first is not None:
                        answers.append((first, False))
                        continue
                size = record.request_bytes
                if queued >= max_queued or (max_queued_bytes is not None
                                            and queued_bytes + size > max_queued_bytes):
                    answers.append(AdmissionRejected(
                        f"the asynchronous queue is full ({queued} calls, {queued_bytes} bytes "
                        "queued); retry later", retry_after_s=5))
                    continue
                tenant = record.tenant
                if tenant is not None and tenant in limits and per_tenant[tenant] >= limits[
                        tenant]:
                    answers.append(AdmissionRejected(
                        f"tenant {tenant!r} has {per_tenant[tenant]} asynchronous calls "
                        f"queued, its quota (max_queued); retry later", retry_after_s=5))
                    continue
                if tenant is not None and tenant in per_tenant:
                    per_tenant[tenant] += 1
                queued, queued_bytes = queued + 1, queued_bytes + size
                rows.append(to_row(record))
                if idempotency_key is not None:
                    taken[(record.function_id, idempotency_key)] = record.id
                    keys.append({"function_id": record.function_id,
                                 "idempotency_key": idempotency_key,
                                 "invocation_id": record.id, "expires_at": now + key_ttl_us})
                answers.append((record.id, True))
            if rows:
                await conn.execute(INSERT, rows)  # not .values(): its cache key costs
            if keys:
                await conn.execute(INSERT_KEY, keys)
            return answers

        for attempt in range(3):
            try:
                return await self._write(put)
            except Conflict:
                # Two first uses of one key raced (PostgreSQL, READ COMMITTED): the loser
                # sees the winner's key on the next try.
                if all(key is None for _, key in calls) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    async def _queued_of(conn: Any, tenants: set[str | None]) -> dict[str, int]:
        """Queued calls of each of ``tenants`` (0 for one with none)."""
        named = sorted(t for t in tenants if t is not None)
        counts = dict.fromkeys(named, 0)
        if named:
            rows = await conn.execute(
                select(invocations.c.tenant, func.count()).where(
                    invocations.c.status == QUEUED, invocations.c.tenant.in_(named))
                .group_by(invocations.c.tenant))
            counts.update({str(tenant): int(count) for tenant, count in rows})
        return counts

    @staticmethod
    async def _live_key(conn: Any, function_id: str, idempotency_key: str,
                        now: int) -> str | None:
        """The call a live key names; an expired key is removed (its name is free again)."""
        key = and_(idempotency_keys.c.function_id == function_id,
                   idempotency_keys.c.idempotency_key == idempotency_key)
        found = (await conn.execute(select(
            idempotency_keys.c.invocation_id, idempotency_keys.c.expires_at)
            .where(key))).one_or_none()
        if found is not None and found.expires_at > now:
            return str(found.invocation_id)
        if found is not None:
            await conn.execute(delete(idempotency_keys).where(key))
        return None

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
                     .limit(limit * CLAIM_WINDOW).with_for_update(skip_locked=True))
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
            taken = [to_record(row) for row in rows]
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
                await conn.execute(INSERT, [to_row(r) for r in inserts])
            done: set[str] = set()
            for invocation_id, owner, outcome in ends:
                params = {f"v_{name}": getattr(outcome, name) for name in OUTCOME_COLUMNS}
                params["v_stdout_truncated"] = int(outcome.stdout_truncated)
                params["v_stderr_truncated"] = int(outcome.stderr_truncated)
                params.update(v_finished_at=outcome.finished_at, w_id=invocation_id,
                              w_owner=owner)
                result = await conn.execute(SETTLE, params)  # one statement, compiled once
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
                        **ended_values(now_us()))
                .returning(*invocations.c))).one()
            return to_record(updated), str(row.status)

        return await self._write(write)

    async def get(self, invocation_id: str) -> InvocationRecord:
        check_invocation_id(invocation_id)

        async def read(conn: Any) -> InvocationRecord:
            row = (await conn.execute(select(invocations).where(
                invocations.c.id == invocation_id))).one_or_none()
            if row is None:
                raise NotFound(f"no invocation {invocation_id}")
            return to_record(row)

        return await self._read(read)

    async def list_records(self, *, function_id: str | None = None, status: str | None = None,
                   since: int | None = None, limit: int = 50, cursor: str | None = None,
                   tenant: str | None = None, caller: str | None = None) -> InvocationPage:
        """Records newest first (by acceptance), ``limit`` (1..MAX_RECORD_PAGE) at a time;
        output columns are left out (empty). ``tenant``/``caller``: only that tenant's,
        only that key's."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not (
                1 <= limit <= MAX_RECORD_PAGE):
            raise ValidationError(f"limit must be an integer from 1 to {MAX_RECORD_PAGE}")
        columns = [c for c in invocations.c if c.name not in ("stdout", "stderr", "request")]
        query = select(*columns)
        if tenant is not None:
            query = query.where(invocations.c.tenant == tenant)
        if caller is not None:
            query = query.where(invocations.c.caller == caller)
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
                **{flag: bool(row._mapping[flag]) for flag in FLAGS}}) for row in rows[:limit])
            more = len(rows) > limit
            return InvocationPage(items, encode_record_cursor(items[-1].accepted_at, items[-1].id)
                                  if more else None)

        return await self._read(read)

