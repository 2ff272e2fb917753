"""Pre-started, single-use sandboxes: fast starts without ever reusing one.

A ``SingleUsePool`` keeps a number of sandboxes of one class (same executor,
image, vCPUs, memory) started ahead of time and waiting. ``acquire`` hands
one out, which the caller uses once and destroys; the pool refills in the
background. When none is ready the caller starts one itself (a cold start)
rather than wait or fail.

Sizing follows OpenWhisk's prewarm "stem cells": between ``min_size`` and
``max_size``, the target is the demand the pool has seen recently (hand-outs
per second over ``window_s``, times the time one start takes, plus one),
capped by a memory budget shared by every pool of a ``PoolSet``. After
``idle_expiry_s`` without a hand-out the target falls back to ``min_size``
and the surplus is destroyed.

A pooled item is checked with ``healthy`` before it is handed out and
periodically while it waits; one that died or went stale (older than
``max_age_s``) is destroyed and replaced, never handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from faas.errors import FaasError

log = logging.getLogger("faas.pool")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    min_size: int = 0
    max_size: int = 4
    idle_expiry_s: float = 60.0
    max_age_s: float = 600.0
    window_s: float = 10.0
    check_interval_s: float = 1.0


@dataclass(slots=True)
class _Ready(Generic[T]):
    item: T
    born: float
    start_s: float


class SingleUsePool(Generic[T]):
    """Ready-to-use sandboxes of one class; see the module docstring."""

    def __init__(
        self,
        key: Hashable,
        start: Callable[[], Awaitable[T]],
        destroy: Callable[[T], Awaitable[None]],
        healthy: Callable[[T], bool],
        *,
        policy: PoolPolicy,
        item_bytes: int = 0,
        budget: Callable[[SingleUsePool[T]], int] | None = None,
    ) -> None:
        self.key = key
        self.policy = policy
        self.item_bytes = item_bytes
        self._start, self._destroy, self._healthy = start, destroy, healthy
        self._budget = budget
        self._ready: deque[_Ready[T]] = deque()
        self._starting = 0
        self._handouts: deque[float] = deque()
        self._start_times: deque[float] = deque(maxlen=20)
        self._last_handout = time.monotonic()
        self._wake = asyncio.Event()
        self._filled = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._keeper: asyncio.Task[None] | None = None
        self._closed = False

    # -- sizes -------------------------------------------------------------------
    @property
    def ready(self) -> int:
        return len(self._ready)

    @property
    def starting(self) -> int:
        return self._starting

    def target(self) -> int:
        """How many should be ready or starting now."""
        now = time.monotonic()
        while self._handouts and now - self._handouts[0] > self.policy.window_s:
            self._handouts.popleft()
        if now - self._last_handout > self.policy.idle_expiry_s:
            wanted = self.policy.min_size
        else:
            rate = len(self._handouts) / self.policy.window_s
            start_s = (sum(self._start_times) / len(self._start_times)
                       if self._start_times else 1.0)
            wanted = max(self.policy.min_size, min(self.policy.max_size,
                                                   int(rate * start_s) + 1))
        if self._budget is not None and self.item_bytes:
            wanted = min(wanted, self._budget(self) // self.item_bytes)
        return max(0, wanted)

    # -- hand-out ----------------------------------------------------------------
    async def acquire(self, cold_start: Callable[[], Awaitable[T]] | None = None
                      ) -> tuple[T, str, float]:
        """(item, "warm" or "cold", seconds spent starting it).

        Warm: a pooled item, checked healthy. Cold: started now by the caller's
        task with ``cold_start`` (default: the pool's own start; a caller may
        skip preparation that only pays off for items that wait). Cancelling
        the caller cancels the start, which must clean up.
        """
        self._note_handout()
        while self._ready:
            entry = self._ready.popleft()
            if self._fresh(entry):
                self._kick()
                return entry.item, "warm", entry.start_s
            await self._destroy(entry.item)
        self._kick()
        t0 = time.monotonic()
        item = await (cold_start or self._start)()
        return item, "cold", time.monotonic() - t0

    def _note_handout(self) -> None:
        now = time.monotonic()
        self._handouts.append(now)
        self._last_handout = now

    def _fresh(self, entry: _Ready[T]) -> bool:
        if time.monotonic() - entry.born > self.policy.max_age_s:
            return False
        try:
            return self._healthy(entry.item)
        except OSError:
            return False

    # -- background --------------------------------------------------------------
    def start(self) -> None:
        """Start the keeper task that fills, checks and trims the pool."""
        if self._keeper is None and not self._closed:
            self._keeper = asyncio.ensure_future(self._keep())

    def _kick(self) -> None:
        self._wake.set()

    async def _keep(self) -> None:
        while not self._closed:
            self._wake.clear()
            await self._check_ready()
            target = self.target()
            for _ in range(target - self.ready - self._starting):
                self._spawn_one()
            while self.ready + self._starting > target and self._ready:
                await self._destroy(self._ready.pop().item)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.policy.check_interval_s):
                    await self._wake.wait()

    async def _check_ready(self) -> None:
        for entry in list(self._ready):
            if not self._fresh(entry):
                with contextlib.suppress(ValueError):
                    self._ready.remove(entry)
                await self._destroy(entry.item)

    def _spawn_one(self) -> None:
        self._starting += 1
        task = asyncio.ensure_future(self._fill_one())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fill_one(self) -> None:
        t0 = time.monotonic()
        try:
            item = await self._start()
        except (FaasError, OSError, TimeoutError) as exc:
            log.warning("pool %s: pre-start failed: %s", self.key, exc)
            await asyncio.sleep(1.0)  # do not spin on a broken start
            return
        finally:
            self._starting -= 1
        elapsed = time.monotonic() - t0
        self._start_times.append(elapsed)
        if self._closed:
            await self._destroy(item)
            return
        self._ready.append(_Ready(item, time.monotonic(), elapsed))
        self._filled.set()
        self._kick()

    async def wait_ready(self, count: int) -> None:
        """Wait until ``count`` items (at most the current target) are ready."""
        while self.ready < min(count, self.target()):
            self._filled.clear()
            await self._filled.wait()

    async def aclose(self) -> None:
        """Stop refilling and destroy everything pooled or starting. Idempotent."""
        self._closed = True
        tasks = [t for t in (self._keeper, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while self._ready:
            await self._destroy(self._ready.popleft().item)


class PoolSet(Generic[T]):
    """One pool per sandbox class, created on first use, sharing a memory budget.

    At most ``max_pools`` classes keep a pool: a caller choosing a new class
    on every call (each ``memory_mb`` value is a class) would otherwise grow
    the pools, their background tasks and their metric series without bound.
    A new class beyond the cap evicts the least recently used pool, whose
    waiting sandboxes are destroyed.
    """

    def __init__(
        self,
        start: Callable[[Hashable], Callable[[], Awaitable[T]]],
        destroy: Callable[[T], Awaitable[None]],
        healthy: Callable[[T], bool],
        *,
        policy: PoolPolicy,
        budget_bytes: int,
        item_bytes: Callable[[Hashable], int],
        max_pools: int = 16,
    ) -> None:
        self.policy = policy
        self.budget_bytes = budget_bytes
        self.max_pools = max(1, max_pools)
        self._start, self._destroy, self._healthy = start, destroy, healthy
        self._item_bytes = item_bytes
        # Least recently used first (dicts keep insertion order; a use re-inserts).
        self.pools: dict[Hashable, SingleUsePool[T]] = {}
        self._evicting: set[asyncio.Task[None]] = set()

    def pool(self, key: Hashable) -> SingleUsePool[T]:
        pool = self.pools.pop(key, None)
        if pool is None:
            while len(self.pools) >= self.max_pools:
                self._evict(next(iter(self.pools)))
            pool = SingleUsePool(key, self._start(key), self._destroy, self._healthy,
                                 policy=self.policy, item_bytes=self._item_bytes(key),
                                 budget=self._room_for)
            pool.start()
        self.pools[key] = pool
        return pool

    def _evict(self, key: Hashable) -> None:
        pool = self.pools.pop(key)
        log.info("pool class cap (%d) reached: dropped the least recently used pool",
                 self.max_pools)
        task = asyncio.ensure_future(pool.aclose())
        self._evicting.add(task)
        task.add_done_callback(self._evicting.discard)

    def _room_for(self, pool: SingleUsePool[T]) -> int:
        """Bytes ``pool`` may hold: the budget less what the other pools hold."""
        others = sum((p.ready + p.starting) * p.item_bytes
                     for p in self.pools.values() if p is not pool)
        return max(0, self.budget_bytes - others)

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self.pools.values()), *self._evicting)
