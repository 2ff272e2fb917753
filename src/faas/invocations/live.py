"""Calls this server is running now, and callers waiting for a record to become final.

A sync call is written to the store only when it ends (one write, batched);
until then ``GET /invocations/{id}`` and ``DELETE`` find it here. An async
call is in the store from acceptance; its entry here lets a ``DELETE`` kill
its sandbox. ``Waiters`` wake long-polls as soon as a record is final here;
records finished by another server are found by polling.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from faas.store.invocation_records import InvocationRecord


@dataclass(frozen=True, slots=True)
class RecordScope:
    """Which records a caller may see: its tenant's; an invoker only its own key's."""

    tenant: str
    #: the key id whose calls alone are visible (None: every call of the tenant)
    caller: str | None = None

    def sees(self, record: InvocationRecord) -> bool:
        return record.tenant == self.tenant and (
            self.caller is None or record.caller == self.caller)


@dataclass(eq=False)
class LiveCall:
    record: InvocationRecord
    task: asyncio.Future[Any] | None = None
    #: set by a DELETE: the task was cancelled on purpose, the record says "cancelled"
    cancelled: bool = False


@dataclass
class LiveCalls:
    calls: dict[str, LiveCall] = field(default_factory=dict)
    _waiters: dict[str, tuple[asyncio.Event, list[int]]] = field(default_factory=dict)

    def add(self, record: InvocationRecord, task: asyncio.Future[Any] | None) -> LiveCall:
        call = LiveCall(record, task)
        self.calls[record.id] = call
        return call

    def get(self, invocation_id: str) -> InvocationRecord | None:
        call = self.calls.get(invocation_id)
        return None if call is None else call.record

    def settled(self, invocation_ids: set[str] | list[str]) -> None:
        """These records are in the store now (final, or back in the queue)."""
        for invocation_id in invocation_ids:
            self.calls.pop(invocation_id, None)
            waiter = self._waiters.get(invocation_id)
            if waiter is not None:
                waiter[0].set()

    def cancel(self, invocation_id: str, record: InvocationRecord) -> bool:
        """Kill a running call's task (its sandbox dies); False if it is not running here."""
        call = self.calls.get(invocation_id)
        if call is None or call.task is None or call.task.done():
            return False
        call.cancelled = True
        call.record = record
        call.task.cancel()
        return True

    async def wait(self, invocation_id: str, timeout_s: float) -> None:
        """Until the record is settled here, or ``timeout_s`` passes (no error either way)."""
        event, users = self._waiters.setdefault(invocation_id, (asyncio.Event(), [0]))
        users[0] += 1
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._waiters[invocation_id]

