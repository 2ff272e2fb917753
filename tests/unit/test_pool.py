"""The single-use pool's rules, with fake sandboxes (numbers) that record their fate."""

import asyncio
import itertools

from faas.errors import SandboxError
from faas.pool import PoolPolicy, PoolSet, SingleUsePool


class Fakes:
    def __init__(self, start_s: float = 0.01) -> None:
        self.ids = itertools.count(1)
        self.alive: set[int] = set()
        self.destroyed: list[int] = []
        self.dead: set[int] = set()
        self.start_s = start_s
        self.fail_next = 0

    async def start(self) -> int:
        await asyncio.sleep(self.start_s)
        if self.fail_next:
            self.fail_next -= 1
            raise SandboxError("boot failed")
        n = next(self.ids)
        self.alive.add(n)
        return n

    async def destroy(self, n: int) -> None:
        self.alive.discard(n)
        self.destroyed.append(n)

    def healthy(self, n: int) -> bool:
        return n not in self.dead


def make(f: Fakes, **policy: float) -> SingleUsePool[int]:
    pool = SingleUsePool("k", f.start, f.destroy, f.healthy,
                         policy=PoolPolicy(check_interval_s=0.02, **policy))  # type: ignore[arg-type]
    pool.start()
    return pool


async def settle() -> None:
    await asyncio.sleep(0.15)


async def test_fills_to_min_and_hands_out_each_item_once() -> None:
    f = Fakes()
    pool = make(f, min_size=2, max_size=4)
    await settle()
    assert pool.ready == 2
    seen = set()
    kinds = []
    for _ in range(6):
        item, kind, _ = await pool.acquire()
        assert item not in seen
        seen.add(item)
        kinds.append(kind)
        await f.destroy(item)
        await asyncio.sleep(0.05)
    assert kinds.count("warm") >= 4
    await pool.aclose()
    assert not f.alive


async def test_dead_item_is_replaced_not_handed_out() -> None:
    f = Fakes()
    pool = make(f, min_size=1, max_size=1)
    await settle()
    (victim,) = f.alive
    f.dead.add(victim)
    await settle()
    assert victim in f.destroyed and pool.ready == 1
    item, kind, _ = await pool.acquire()
    assert item != victim and kind == "warm"
    await pool.aclose()


async def test_burst_beyond_pool_falls_back_to_cold_starts() -> None:
    f = Fakes(start_s=0.05)
    pool = make(f, min_size=2, max_size=2)
    await settle()
    results = await asyncio.gather(*(pool.acquire() for _ in range(6)))
    kinds = [kind for _, kind, _ in results]
    assert kinds.count("warm") == 2 and kinds.count("cold") == 4
    assert len({item for item, _, _ in results}) == 6
    await pool.aclose()


async def test_idle_pool_shrinks_to_min_and_demand_grows_it() -> None:
    f = Fakes()
    pool = make(f, min_size=0, max_size=3, idle_expiry_s=0.3, window_s=1.0)
    for _ in range(8):
        item, _, _ = await pool.acquire()
        await f.destroy(item)
    await settle()
    assert pool.ready >= 1
    await asyncio.sleep(0.5)
    assert pool.ready == 0 and pool.target() == 0
    await pool.aclose()


async def test_failed_prestart_is_retried_and_close_leaves_nothing() -> None:
    f = Fakes()
    f.fail_next = 1
    pool = make(f, min_size=1, max_size=1)
    await asyncio.sleep(1.3)
    assert pool.ready == 1
    await pool.aclose()
    await pool.aclose()
    assert not f.alive


async def test_poolset_shares_a_memory_budget() -> None:
    f = Fakes()
    pools = PoolSet(lambda key: f.start, f.destroy, f.healthy,
                    policy=PoolPolicy(min_size=3, max_size=3, check_interval_s=0.02),
                    budget_bytes=4 * 100, item_bytes=lambda key: 100)
    a, b = pools.pool("a"), pools.pool("b")
    await settle()
    assert a.ready + b.ready == 4
    await pools.aclose()
    assert not f.alive


async def test_poolset_keeps_at_most_max_pools_classes_dropping_the_least_recent() -> None:
    f = Fakes()
    pools = PoolSet(lambda key: f.start, f.destroy, f.healthy,
                    policy=PoolPolicy(min_size=1, max_size=1, check_interval_s=0.02),
                    budget_bytes=100 * 100, item_bytes=lambda key: 100, max_pools=3)
    for key in ("a", "b", "c"):
        pools.pool(key)
    await settle()
    pools.pool("a")  # now the most recent
    for i in range(20):  # a caller cycling through classes
        pools.pool(f"class-{i}")
        await asyncio.sleep(0)
    await settle()
    assert len(pools.pools) == 3 and "class-19" in pools.pools
    # Evicted pools destroyed what they held: only the 3 kept pools hold items.
    assert len(f.alive) <= 3
    await pools.aclose()
    assert not f.alive


async def test_cold_hand_out_uses_the_callers_start_and_wait_ready_waits() -> None:
    f = Fakes(start_s=0.05)
    pool = make(f, min_size=1, max_size=1)

    async def callers_start() -> int:
        return 1000

    item, kind, _ = await pool.acquire(callers_start)
    assert (item, kind) == (1000, "cold")
    await asyncio.wait_for(pool.wait_ready(1), 2)
    item, kind, _ = await pool.acquire(callers_start)
    assert kind == "warm" and item != 1000
    await f.destroy(item)
    await pool.aclose()
    assert f.alive == set()
