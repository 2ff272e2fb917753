"""The per-tenant token bucket and concurrency slots, on a clock stepped by hand."""

from __future__ import annotations

import pytest

from faas.tenancy.limiter import SWEEP_EVERY_S, Limiter, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_burst_then_refill_at_the_rate(clock: Clock) -> None:
    limiter = Limiter(clock)
    assert [limiter.try_take("a", 2.0, 3) for _ in range(3)] == [None, None, None]
    wait = limiter.try_take("a", 2.0, 3)
    assert wait == pytest.approx(0.5)  # one token every 1/2 s
    clock.now += 0.25
    assert limiter.try_take("a", 2.0, 3) == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.try_take("a", 2.0, 3) is None
    assert limiter.try_take("a", 2.0, 3) == pytest.approx(0.5)
    clock.now += 60  # refills up to the burst, never past it
    assert [limiter.try_take("a", 2.0, 3) for _ in range(4)][-1] is not None


def test_tenants_have_buckets_of_their_own(clock: Clock) -> None:
    limiter = Limiter(clock)
    assert limiter.try_take("a", 1.0, 1) is None
    assert limiter.try_take("a", 1.0, 1) is not None
    assert limiter.try_take("b", 1.0, 1) is None


def test_rate_zero_is_no_limit_and_keeps_nothing(clock: Clock) -> None:
    limiter = Limiter(clock)
    assert all(limiter.try_take("a", 0.0, 1) is None for _ in range(1000))
    assert len(limiter) == 0


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after(0.01) == 1
    assert retry_after(1.0) == 1
    assert retry_after(1.2) == 2


def test_a_slow_rate_reports_its_real_wait(clock: Clock) -> None:
    limiter = Limiter(clock)
    assert limiter.try_take("a", 0.1, 1) is None
    wait = limiter.try_take("a", 0.1, 1)
    assert wait == pytest.approx(10.0)
    assert retry_after(wait or 0) == 10


def test_slots_up_to_the_limit_and_back(clock: Clock) -> None:
    limiter = Limiter(clock)
    assert limiter.try_acquire("a", 2) and limiter.try_acquire("a", 2)
    assert not limiter.try_acquire("a", 2)
    assert limiter.try_acquire("b", 2)  # another tenant is not affected
    limiter.release("a")
    assert limiter.running("a") == 1
    assert limiter.try_acquire("a", 2)
    limiter.release("x")  # unknown: nothing happens, nothing is kept
    assert limiter.running("x") == 0 and len(limiter) == 2


def test_idle_entries_are_evicted(clock: Clock) -> None:
    limiter = Limiter(clock)
    for i in range(100):
        assert limiter.try_take(f"t{i}", 10.0, 10) is None
    assert limiter.try_acquire("busy", 1)
    assert len(limiter) == 101
    clock.now += SWEEP_EVERY_S  # 10/s refills one token in 0.1 s: every bucket is full
    limiter.try_take("t0", 10.0, 10)  # traffic runs the sweep
    assert len(limiter) == 2  # t0 (just used) and the tenant still holding a slot
    limiter.release("busy")
    clock.now += SWEEP_EVERY_S
    assert limiter.sweep() == 2 and len(limiter) == 0


def test_a_slow_bucket_is_not_evicted_before_it_refilled(clock: Clock) -> None:
    limiter = Limiter(clock)
    assert limiter.try_take("a", 0.1, 1) is None
    clock.now += 5
    assert limiter.sweep() == 0  # half a token: dropping it would hand out a free one
    assert limiter.try_take("a", 0.1, 1) == pytest.approx(5.0)
    clock.now += 10
    assert limiter.sweep() == 1
