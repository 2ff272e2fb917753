"""How long a wrong key takes to refuse does not depend on how much of a real key it matched.

A statistical test, not a timed assertion: the refusal times of keys that match a
real key in all but their last character and of keys that match nothing are two
samples, taken interleaved in random order, compared with a Mann-Whitney U test.
They must be indistinguishable (|z| below a bound a fair coin passes all but once in
tens of thousands of runs). The same statistic is first shown to tell apart a
comparison that does leak (a character-by-character loop that stops at the first
difference), so a pass means the instrument could have failed.

The store behind the authenticator is an in-memory lookup (the narrow seam
``KeyLookup``): a database's own jitter would drown any difference, leak or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable

from faas.errors import Unauthenticated
from faas.store.tenant_records import KeyInfo
from faas.tenancy.authenticator import Authenticator
from faas.tenancy.keys import hash_key, new_key

SAMPLES = 3000
#: |z| of the U statistic above which two samples are called different (p ~ 6e-5).
Z_BOUND = 4.0


class MemoryKeys:
    def __init__(self, keys: list[KeyInfo]) -> None:
        self.by_hash = {info.key_hash: info for info in keys}

    async def key_by_hash(self, key_hash: bytes) -> KeyInfo | None:
        return self.by_hash.get(key_hash)

    async def usable_keys(self) -> int:
        return len(self.by_hash)


def mann_whitney_z(a: list[int], b: list[int]) -> float:
    """The normal approximation of the U statistic (ties get their mean rank)."""
    ranked = sorted([(value, 0) for value in a] + [(value, 1) for value in b])
    ranks = [0.0] * len(ranked)
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    rank_a = sum(rank for rank, (_, group) in zip(ranks, ranked, strict=True) if group == 0)
    n1, n2 = len(a), len(b)
    u = rank_a - n1 * (n1 + 1) / 2
    mean, sd = n1 * n2 / 2, math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    return (u - mean) / sd


async def refusal_times(check: Callable[[str], Awaitable[object]], near: list[str],
                        far: list[str]) -> tuple[list[int], list[int]]:
    order = [(0, key) for key in near] + [(1, key) for key in far]
    random.Random(7).shuffle(order)  # noqa: S311 (an order, not a secret)
    times: tuple[list[int], list[int]] = ([], [])
    for group, key in order:
        start = time.perf_counter_ns()
        with contextlib.suppress(Unauthenticated):
            await check(key)
        times[group].append(time.perf_counter_ns() - start)
    return times


def wrong_keys(reals: list[str]) -> tuple[list[str], list[str]]:
    """For each real key one that matches it in all but its last character, and as many
    that match nothing; every one a distinct string (no cache favours either group)."""
    near = [real[:-1] + ("B" if real[-1] != "B" else "C") for real in reals]
    far = [new_key().key for _ in reals]
    return near, far


async def test_a_leaky_comparison_is_told_apart_by_the_same_statistic() -> None:
    reals = [new_key().key for _ in range(SAMPLES)]
    by_id = {real[5:17]: real for real in reals}

    async def leaky(key: str) -> None:
        for mine, theirs in zip(key, by_id.get(key[5:17], reals[0]), strict=True):
            if mine != theirs:
                raise Unauthenticated("no")
        await asyncio.sleep(0)

    near, far = wrong_keys(reals)
    near_times, far_times = await refusal_times(leaky, near, far)
    assert mann_whitney_z(near_times, far_times) > Z_BOUND


async def test_refusing_a_wrong_key_takes_as_long_however_much_of_a_real_key_it_matched(
        ) -> None:
    made = [new_key() for _ in range(SAMPLES)]
    authenticator = Authenticator(MemoryKeys([
        KeyInfo(id=m.key_id, tenant="acme", role="admin", name="", key_hash=m.key_hash,
                created_at=0) for m in made]), open_allowed=False)
    assert (await authenticator.authenticate(f"Bearer {made[0].key}")).tenant == "acme"
    near, far = wrong_keys([m.key for m in made])
    assert hash_key(near[0]) != made[0].key_hash
    near_times, far_times = await refusal_times(
        lambda key: authenticator.authenticate(f"Bearer {key}"), near, far)
    z = mann_whitney_z(near_times, far_times)
    assert abs(z) < Z_BOUND, (z, sorted(near_times)[SAMPLES // 2],
                              sorted(far_times)[SAMPLES // 2])
