"""What the invocation store's queries share: row conversion, constant statements, and
the transaction runner its classes build on (``InvocationTransactions``)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import fields
from typing import Any, TypeVar

from sqlalchemy import BigInteger, BindParameter, bindparam, case, func, select, update
from sqlalchemy.engine import Row

from faas.store.engine import Engines, database_errors
from faas.store.invocation_records import CALLBACK_PENDING, QUEUED, RUNNING, InvocationRecord
from faas.store.tables import idempotency_keys, invocations
from faas.store.url import DatabaseTarget

T = TypeVar("T")
Shield = Callable[[Coroutine[Any, Any, Any]], Coroutine[Any, Any, Any]]
FIELDS = tuple(f.name for f in fields(InvocationRecord))
FLAGS = ("retry_timeouts", "retry_failures", "stdout_truncated", "stderr_truncated")
#: How many queued rows one claim looks at for each call it may take (per-function caps skip some).
CLAIM_WINDOW = 4
#: How long a callback handed to a sender is not handed out again (it is being delivered).
CALLBACK_LEASE_US = 60_000_000
#: Rows deleted per statement when pruning.
PRUNE_BATCH = 1000
INSERT = invocations.insert()
INSERT_KEY = idempotency_keys.insert()
COUNT_QUEUED = select(func.count()).select_from(invocations).where(
    invocations.c.status == QUEUED)
QUEUE_SIZE = select(func.count(), func.coalesce(func.sum(invocations.c.request_bytes), 0)
                     ).where(invocations.c.status == QUEUED)


def to_row(record: InvocationRecord) -> dict[str, Any]:
    row = {name: getattr(record, name) for name in FIELDS}
    for flag in FLAGS:
        row[flag] = int(row[flag])
    return row


def to_record(row: Row[Any]) -> InvocationRecord:
    values = dict(row._mapping)
    for flag in FLAGS:
        values[flag] = bool(values[flag])
    values["stdout"] = bytes(values["stdout"] or b"")
    values["stderr"] = bytes(values["stderr"] or b"")
    if values["request"] is not None:
        values["request"] = bytes(values["request"])
    return InvocationRecord(**values)


def ended_values(finished_at: int | BindParameter[int]) -> dict[str, Any]:
    """What every transition to a final status also sets: the callback becomes due."""
    return {"finished_at": finished_at, "request": None, "owner": None,
            "callback_state": case((invocations.c.callback_url.is_not(None), CALLBACK_PENDING),
                                   else_=None),
            "callback_next_at": case((invocations.c.callback_url.is_not(None), finished_at),
                                     else_=None)}


#: What ``settle`` writes from an ``Outcome`` (as ``v_<name>`` parameters).
OUTCOME_COLUMNS = ("status", "executor", "start_kind", "start_ms", "duration_ms", "exit_code",
                   "signal", "error", "stdout", "stderr", "stdout_truncated",
                   "stderr_truncated")
#: An outcome over a row still running under the same owner (``w_id``, ``w_owner``).
SETTLE = (update(invocations)
          .where(invocations.c.id == bindparam("w_id"), invocations.c.status == RUNNING,
                 invocations.c.owner == bindparam("w_owner"))
          .values(**{name: bindparam(f"v_{name}") for name in OUTCOME_COLUMNS},
                  **ended_values(bindparam("v_finished_at", type_=BigInteger))))


class InvocationTransactions:
    """One transaction per method, run through the store's shield (see ``SqlStore``)."""

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

