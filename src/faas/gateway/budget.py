"""A memory budget for request bodies: bytes reserved before reading, released after use.

Without it each large request costs its body, the parsed JSON and the
decoded payload at once, for as long as the request waits in the admission
queue, and nothing bounds how many are read at the same time: 32 clients
sending 24 MiB bodies made the gateway hold well over a gigabyte.

A request reserves what reading and parsing its body may cost *before* it
reads a byte (an unread body waits in the kernel's socket buffer, which the
client's TCP window bounds), then shrinks the reservation to the payload it
keeps until the invocation ends. Waiters are served first come, first served,
so a large request is not starved by a stream of small ones; one that cannot
get its bytes within its deadline is refused (HTTP 429). A reservation larger
than the whole budget is cut to the budget: it then runs alone.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

from faas.errors import AdmissionRejected


@dataclass(eq=False)
class Reservation:
    """Bytes held from a ``ByteBudget``; ``release()`` is idempotent."""

    budget: ByteBudget
    size: int
    released: bool = field(default=False)

    def shrink(self, size: int) -> None:
        """Keep only ``size`` bytes (never grows)."""
        size = max(0, size)
        if not self.released and size < self.size:
            self.budget._give_back(self.size - size)
            self.size = size

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.budget._give_back(self.size)
            self.size = 0


class ByteBudget:
    """At most ``capacity`` bytes reserved at once."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.used = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = (
            collections.deque())

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def reserve(self, size: int, deadline: float) -> Reservation:
        """Wait (until ``deadline``, loop clock) for ``size`` bytes; else ``AdmissionRejected``."""
        size = min(max(0, size), self.capacity)
        if not self._waiters and self.used + size <= self.capacity:
            self.used += size
            return Reservation(self, size)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._give_back(size)  # granted just as we gave up: hand it on
            if isinstance(exc, TimeoutError):
                raise AdmissionRejected(
                    "server busy: too many large request bodies in memory; retry later",
                    retry_after_s=1,
                ) from None
            raise
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
                self._wake()
        return Reservation(self, size)

    def _give_back(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            size, waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            if self.used + size > self.capacity:
                return
            self._waiters.popleft()
            self.used += size
            waiter.set_result(None)
