"""Per-tenant rate and concurrency, in memory on each server: a token bucket and slots.

``Limiter`` keeps at most one entry per tenant it was asked about, and the
gateway asks only about the tenant of an authenticated principal (a tenant
that exists), never about a name a caller sent. An entry whose bucket is full
again and that holds no slot is the same as no entry, so ``sweep`` (run at
most once a second by the callers' own traffic) drops it: memory follows the
tenants active in the last second, not every tenant ever seen.

The clock is injected (monotonic seconds) so tests step it by hand. Nothing
here awaits: each method runs to its end on the event loop, so a check and
the take that follows it cannot interleave with another call's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

#: How often idle entries are looked for (seconds of the injected clock).
SWEEP_EVERY_S = 1.0


@dataclass(slots=True)
class _Entry:
    tokens: float
    updated: float
    #: the bucket's last rate and size (a changed quota takes effect at the next take)
    rate_per_s: float = 0.0
    burst: int = 0
    running: int = 0

    def idle(self, now: float) -> bool:
        """No slot held and the bucket full again: the same as no entry at all."""
        return self.running == 0 and (
            self.rate_per_s <= 0
            or self.tokens + (now - self.updated) * self.rate_per_s >= self.burst)


def retry_after(seconds: float) -> int:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return max(1, math.ceil(seconds))


class Limiter:
    """Token buckets (``rate_per_s``, ``burst``) and concurrency slots, one entry per tenant."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._swept = clock()

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, tenant: str, now: float) -> _Entry:
        entry = self._entries.get(tenant)
        if entry is None:
            entry = self._entries[tenant] = _Entry(-1.0, now)
        return entry

    def try_take(self, tenant: str, rate_per_s: float, burst: int) -> float | None:
        """Take one token: None if taken, else the seconds until one is there.

        ``rate_per_s`` 0 means no limit (nothing is kept for it).
        """
        if rate_per_s <= 0:
            return None
        now = self._clock()
        self._maybe_sweep(now)
        entry = self._entry(tenant, now)
        if entry.tokens < 0:  # new: a full bucket
            entry.tokens = float(burst)
        elif now > entry.updated:
            entry.tokens = min(float(burst), entry.tokens + (now - entry.updated) * rate_per_s)
        entry.tokens = min(entry.tokens, float(burst))
        entry.updated, entry.rate_per_s, entry.burst = max(now, entry.updated), rate_per_s, burst
        if entry.tokens >= 1.0:
            entry.tokens -= 1.0
            return None
        return (1.0 - entry.tokens) / rate_per_s

    def try_acquire(self, tenant: str, limit: int) -> bool:
        """Hold one of ``limit`` slots of ``tenant``; False if all are held."""
        now = self._clock()
        self._maybe_sweep(now)
        entry = self._entry(tenant, now)
        if entry.running >= limit:
            return False
        entry.running += 1
        return True

    def running(self, tenant: str) -> int:
        entry = self._entries.get(tenant)
        return 0 if entry is None else entry.running

    def release(self, tenant: str) -> None:
        """Give back a slot ``try_acquire`` gave (the entry stays until a sweep finds it idle)."""
        entry = self._entries.get(tenant)
        if entry is not None and entry.running > 0:
            entry.running -= 1

    def _maybe_sweep(self, now: float) -> None:
        if now - self._swept >= SWEEP_EVERY_S:
            self.sweep(now)

    def sweep(self, now: float | None = None) -> int:
        """Drop idle entries (no slot held, bucket full again); return how many."""
        now = self._clock() if now is None else now
        self._swept = now
        idle = [tenant for tenant, entry in self._entries.items() if entry.idle(now)]
        for tenant in idle:
            del self._entries[tenant]
        return len(idle)


__all__ = ["SWEEP_EVERY_S", "Limiter", "retry_after"]
