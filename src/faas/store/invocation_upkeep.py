"""The invocation store's upkeep: recovering the calls of dead owners, pruning old
records, and the callbacks' due list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update

from faas.store.invocation_records import (
    CALLBACK_PENDING,
    ERROR,
    QUEUED,
    RUNNING,
    InvocationRecord,
    Recovered,
    now_us,
)
from faas.store.invocation_rows import (
    CALLBACK_LEASE_US,
    COUNT_QUEUED,
    PRUNE_BATCH,
    InvocationTransactions,
    ended_values,
    to_record,
)
from faas.store.tables import idempotency_keys, invocations


class InvocationUpkeep(InvocationTransactions):
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
                        status=ERROR, error=error, **ended_values(now)))
                    failed.append(row.id)
            return Recovered(tuple(requeued), tuple(failed))

        return await self._write(write)

    async def prune(self, finished_before: int) -> int:
        """Delete records finished before ``finished_before`` and expired idempotency keys."""
        async def write(conn: Any) -> int:
            old = (select(invocations.c.id).where(invocations.c.finished_at < finished_before)
                   .limit(PRUNE_BATCH))
            removed = (await conn.execute(delete(invocations).where(
                invocations.c.id.in_(old)))).rowcount
            await conn.execute(delete(idempotency_keys).where(
                idempotency_keys.c.expires_at < now_us()))
            return int(removed)

        total = 0
        while True:
            removed = await self._write(write)
            total += removed
            if removed < PRUNE_BATCH:
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
            return [to_record(row) for row in rows]

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
            return int((await conn.execute(COUNT_QUEUED)).scalar_one())

        return await self._read(read)

