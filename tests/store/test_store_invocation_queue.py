"""The durable async queue on both engines: claim, idempotency, admission, recovery,
pruning and callback leases (records themselves: ``test_store_invocations.py``)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from invocation_helpers import ROOMY, count_rows, ended, outcome, queued
from store_backend import Backend

from faas.errors import AdmissionRejected, NotFound
from faas.store import Store
from faas.store.invocation_records import CALLBACK_PENDING, ERROR, QUEUED, RUNNING, now_us
from faas.store.invocation_rows import CALLBACK_LEASE_US

HOUR_US = 3_600_000_000


@pytest.fixture
async def stores(backend: Backend) -> AsyncIterator[list[Store]]:
    """Four stores on one database: four connection pools, so their calls really race."""
    opened = [await backend.open() for _ in range(4)]
    yield opened
    for store in opened:
        await store.close()


async def test_claim_takes_the_oldest_first_and_marks_them_running(store: Store) -> None:
    base = 1_000_000
    # accepted_at first, then id: two calls accepted in the same microsecond.
    records = [queued(accepted_at=base + 5), queued(accepted_at=base + 1),
               queued(accepted_at=base + 3), queued(accepted_at=base + 3)]
    for record in records:
        await store.invocations.enqueue(record, max_queued=ROOMY)
    order = sorted(records, key=lambda r: (r.accepted_at, r.id))
    before = now_us()
    first = await store.invocations.claim("owner-1", 3)
    assert [r.id for r in first] == [r.id for r in order[:3]]
    for got in first:
        assert (got.status, got.owner, got.attempts) == (RUNNING, "owner-1", 1)
        assert got.started_at is not None and got.started_at >= before
        assert await store.invocations.get(got.id) == got
    [last] = await store.invocations.claim("owner-2", 3)
    assert (last.id, last.owner) == (order[3].id, "owner-2")
    assert await store.invocations.claim("owner-2", 3) == []
    assert await store.invocations.claim("owner-2", 0) == []


async def test_concurrent_claimers_never_take_one_call_twice(stores: list[Store]) -> None:
    records = [queued(f"f{n % 5}") for n in range(100)]
    for record in records:
        await stores[0].invocations.enqueue(record, max_queued=ROOMY)

    async def claimer(store: Store, owner: str) -> list[str]:
        taken: list[str] = []
        while True:
            got = await store.invocations.claim(owner, 7)
            taken += [r.id for r in got]
            assert all(r.owner == owner for r in got)
            if not got:
                if await store.invocations.queued_count() == 0:
                    return taken
                await asyncio.sleep(0.001)  # the others hold the rest: let them take it

    results = await asyncio.gather(*(claimer(store, f"owner-{n}")
                                     for n, store in enumerate(stores)))
    claimed = [i for taken in results for i in taken]
    assert sorted(claimed) == sorted(r.id for r in records)  # each exactly once
    for n, taken in enumerate(results):
        for invocation_id in taken:
            got = await stores[0].invocations.get(invocation_id)
            assert (got.owner, got.attempts) == (f"owner-{n}", 1)


async def test_concurrency_caps_and_busy_functions_are_honoured(store: Store) -> None:
    base = 1_000_000
    capped = [queued("capped", accepted_at=base + n, concurrency_cap=1) for n in range(3)]
    pair = [queued("pair", accepted_at=base + 10 + n, concurrency_cap=2) for n in range(3)]
    free = [queued("free", accepted_at=base + 20 + n) for n in range(3)]
    for record in capped + pair + free:
        await store.invocations.enqueue(record, max_queued=ROOMY)

    got = await store.invocations.claim("o", 10)
    assert [r.id for r in got] == [capped[0].id, pair[0].id, pair[1].id,
                                   free[0].id, free[1].id, free[2].id]
    # What already runs counts against the caps; a busy function is skipped.
    got = await store.invocations.claim("o", 10, running={"capped": 1, "pair": 1})
    assert [r.id for r in got] == [pair[2].id]
    more = [queued("free", accepted_at=base + 30 + n) for n in range(2)]
    for record in more:
        await store.invocations.enqueue(record, max_queued=ROOMY)
    got = await store.invocations.claim("o", 10, busy={"capped"})
    assert [r.id for r in got] == [r.id for r in more]
    assert [r.id for r in await store.invocations.claim("o", 10)] == [capped[1].id]


async def test_a_call_is_not_claimed_before_its_not_before(store: Store) -> None:
    later = queued(accepted_at=1, not_before=now_us() + HOUR_US)
    now = queued(accepted_at=2, not_before=now_us() - 1)
    for record in (later, now):
        await store.invocations.enqueue(record, max_queued=ROOMY)
    assert [r.id for r in await store.invocations.claim("o", 5)] == [now.id]
    assert await store.invocations.claim("o", 5) == []
    assert (await store.invocations.get(later.id)).status == QUEUED


async def test_concurrent_enqueues_with_one_key_insert_one_call(
        store: Store, stores: list[Store], backend: Backend) -> None:
    # On one store (one pool) and from four (separate connections racing in the database).
    for key, users in (("k-one-pool", [store]), ("k-four-pools", stores)):
        records = [queued("fn") for _ in range(20)]
        results = await asyncio.gather(*(
            users[n % len(users)].invocations.enqueue(
                record, idempotency_key=key, key_ttl_us=HOUR_US, max_queued=ROOMY)
            for n, record in enumerate(records)))
        assert len({invocation_id for invocation_id, _ in results}) == 1
        assert [created for _, created in results].count(True) == 1
        first = results[0][0]
        assert first in {r.id for r in records}
        assert (await store.invocations.get(first)).status == QUEUED
    assert await count_rows(backend, "invocations") == 2
    assert await store.invocations.queued_count() == 2


async def test_a_key_is_per_function_and_expires(store: Store) -> None:
    first = queued("a")
    assert await store.invocations.enqueue(
        first, idempotency_key="k", key_ttl_us=HOUR_US, max_queued=ROOMY) == (first.id, True)
    # Replayed even once the call ended, and even when the queue is full.
    await store.invocations.claim("o", 1)
    await store.invocations.settle([(first.id, "o", outcome())])
    assert await store.invocations.enqueue(
        queued("a"), idempotency_key="k", key_ttl_us=HOUR_US, max_queued=0) == (first.id, False)
    other = queued("b")
    assert await store.invocations.enqueue(
        other, idempotency_key="k", key_ttl_us=HOUR_US, max_queued=ROOMY) == (other.id, True)

    short = queued("c")
    await store.invocations.enqueue(short, idempotency_key="k2", key_ttl_us=1, max_queued=ROOMY)
    deadline = now_us() + 10
    while now_us() <= deadline:
        await asyncio.sleep(0.001)
    renewed = queued("c")
    assert await store.invocations.enqueue(
        renewed, idempotency_key="k2", key_ttl_us=HOUR_US, max_queued=ROOMY) == (renewed.id, True)
    assert await store.invocations.enqueue(
        queued("c"), idempotency_key="k2", key_ttl_us=HOUR_US,
        max_queued=ROOMY) == (renewed.id, False)
    assert (await store.invocations.get(short.id)).status == QUEUED  # both calls stand


async def test_a_full_queue_rejects_and_only_queued_calls_count(store: Store) -> None:
    await store.invocations.settle((), [ended() for _ in range(5)])  # final rows
    for _ in range(3):
        await store.invocations.enqueue(queued(), max_queued=3)
    with pytest.raises(AdmissionRejected) as rejected:
        await store.invocations.enqueue(queued(), max_queued=3)
    assert rejected.value.retry_after_s >= 1
    with pytest.raises(AdmissionRejected):
        await store.invocations.enqueue(queued(), idempotency_key="new", key_ttl_us=HOUR_US,
                                        max_queued=3)
    assert await store.invocations.queued_count() == 3
    # A running call no longer counts: there is room for one more.
    await store.invocations.claim("o", 1)
    await store.invocations.enqueue(queued(), max_queued=3)
    with pytest.raises(AdmissionRejected):
        await store.invocations.enqueue(queued(), max_queued=3)
    # The rejected key was not kept: it makes a call once there is room.
    await store.invocations.claim("o", 1)
    fresh = queued()
    assert await store.invocations.enqueue(
        fresh, idempotency_key="new", key_ttl_us=HOUR_US, max_queued=3) == (fresh.id, True)


async def test_the_queued_requests_bytes_are_bounded_too(store: Store) -> None:
    big = dataclasses.replace(queued(), request=b"x" * 600)
    await store.invocations.enqueue(big, max_queued=ROOMY, max_queued_bytes=1000)
    assert (await store.invocations.get(big.id)).request_bytes == 600
    with pytest.raises(AdmissionRejected) as rejected:
        await store.invocations.enqueue(dataclasses.replace(queued(), request=b"y" * 500),
                                        max_queued=ROOMY, max_queued_bytes=1000)
    assert "bytes" in str(rejected.value)
    small = dataclasses.replace(queued(), request=b"z" * 300)
    await store.invocations.enqueue(small, max_queued=ROOMY, max_queued_bytes=1000)
    # Once the big one runs, its bytes no longer count.
    await store.invocations.claim("o", 1)
    await store.invocations.enqueue(dataclasses.replace(queued(), request=b"y" * 500),
                                    max_queued=ROOMY, max_queued_bytes=1000)


async def test_recover_requeues_or_fails_the_calls_of_gone_owners(store: Store) -> None:
    retry = queued(accepted_at=1, max_attempts=2)
    spent = queued(accepted_at=2, max_attempts=1, callback_url="https://x/y")
    alive = queued(accepted_at=3, max_attempts=1)
    waiting = queued(accepted_at=4, max_attempts=1)
    final = ended()
    await store.invocations.enqueue(retry, max_queued=ROOMY)
    await store.invocations.enqueue(spent, max_queued=ROOMY)
    await store.invocations.claim("gone|boot|1", 2)
    await store.invocations.enqueue(alive, max_queued=ROOMY)
    await store.invocations.claim("here|boot|2", 1)
    await store.invocations.enqueue(waiting, max_queued=ROOMY)
    await store.invocations.settle((), [final])
    untouched = [await store.invocations.get(r.id) for r in (alive, waiting, final)]

    before = now_us()
    recovered = await store.invocations.recover(lambda owner: owner.startswith("gone"),
                                                "the server running it stopped")
    assert (recovered.requeued, recovered.failed) == ((retry.id,), (spent.id,))
    got = await store.invocations.get(retry.id)
    assert (got.status, got.owner, got.attempts, got.error) == (
        QUEUED, None, 1, "the server running it stopped")
    assert got.request == retry.request and got.finished_at is None
    got = await store.invocations.get(spent.id)
    assert (got.status, got.error, got.owner, got.request) == (
        ERROR, "the server running it stopped", None, None)
    assert got.finished_at is not None and got.finished_at >= before
    assert (got.callback_state, got.callback_next_at) == (CALLBACK_PENDING, got.finished_at)
    assert [await store.invocations.get(r.id) for r in (alive, waiting, final)] == untouched
    [again] = await store.invocations.claim("new|boot|3", 1)
    assert (again.id, again.attempts) == (retry.id, 2)


async def test_prune_deletes_only_old_finished_records(store: Store, backend: Backend) -> None:
    cutoff = now_us() - HOUR_US
    old = [ended(accepted_at=cutoff - 10_000, finished_at=cutoff - 1 - n % 7)
           for n in range(2500)]
    await store.invocations.settle((), old)
    newer = ended(accepted_at=cutoff - 10_000, finished_at=cutoff)
    await store.invocations.settle((), [newer])
    # Accepted long ago but not finished: never pruned, however old.
    stuck = [queued(accepted_at=1), queued(accepted_at=2)]
    for record in stuck:
        await store.invocations.enqueue(record, max_queued=ROOMY)
    await store.invocations.claim("o", 1)
    await store.invocations.enqueue(queued(), idempotency_key="expired", key_ttl_us=1,
                                    max_queued=ROOMY)
    await store.invocations.enqueue(queued(), idempotency_key="kept", key_ttl_us=HOUR_US,
                                    max_queued=ROOMY)
    deadline = now_us() + 10
    while now_us() <= deadline:
        await asyncio.sleep(0.001)

    assert await store.invocations.prune(cutoff) == 2500
    assert await count_rows(backend, "invocations") == 5
    left = {r.id for r in (await store.invocations.list_records(limit=10)).items}
    assert {newer.id, stuck[0].id, stuck[1].id} <= left
    assert await count_rows(backend, "idempotency_keys") == 1
    assert await store.invocations.prune(cutoff) == 0


async def test_due_callbacks_are_leased_and_their_outcome_is_stored(store: Store) -> None:
    t0 = now_us()
    hooked = [queued(accepted_at=n, callback_url=f"https://x/{n}") for n in range(3)]
    plain = queued(accepted_at=3)
    for record in (*hooked, plain):
        await store.invocations.enqueue(record, max_queued=ROOMY)
    await store.invocations.claim("o", 4)
    await store.invocations.settle(
        [(r.id, "o", outcome(finished_at=t0 + n)) for n, r in enumerate(hooked)]
        + [(plain.id, "o", outcome(finished_at=t0))])

    assert await store.invocations.due_callbacks(t0 - 1, 10) == []
    [due] = await store.invocations.due_callbacks(t0 + 1, 1)  # limit: the earliest
    assert (due.id, due.callback_url) == (hooked[0].id, "https://x/0")
    assert due.callback_next_at == t0 + 1 + CALLBACK_LEASE_US
    assert {r.id for r in await store.invocations.due_callbacks(t0 + 2, 10)} == {
        hooked[1].id, hooked[2].id}
    # All three are leased: not handed out again until their lease passes.
    assert await store.invocations.due_callbacks(t0 + 3, 10) == []
    assert [r.id for r in await store.invocations.due_callbacks(
        t0 + 1 + CALLBACK_LEASE_US, 10)] == [hooked[0].id]

    await store.invocations.callback_outcome(
        hooked[0].id, state="delivered", attempts=1, next_at=None, error=None,
        delivered_at=t0 + 50)
    await store.invocations.callback_outcome(
        hooked[1].id, state=CALLBACK_PENDING, attempts=2, next_at=t0 + 10 * CALLBACK_LEASE_US,
        error="HTTP 500", delivered_at=None)
    got = await store.invocations.get(hooked[0].id)
    assert (got.callback_state, got.callback_attempts, got.callback_next_at,
            got.callback_error, got.callback_delivered_at) == ("delivered", 1, None, None, t0 + 50)
    got = await store.invocations.get(hooked[1].id)
    assert (got.callback_state, got.callback_attempts, got.callback_error) == (
        CALLBACK_PENDING, 2, "HTTP 500")
    much_later = t0 + 8 * CALLBACK_LEASE_US
    assert [r.id for r in await store.invocations.due_callbacks(much_later, 10)] == [
        hooked[2].id]
    # The delivered one is never due again; the one to retry is, at its time.
    assert {r.id for r in await store.invocations.due_callbacks(
        t0 + 10 * CALLBACK_LEASE_US, 10)} == {hooked[1].id, hooked[2].id}


async def test_a_batch_answers_each_call_on_its_own(store: Store) -> None:
    """Group commit: one transaction, one answer per call — a key repeated in the batch
    answers its first call, and only the calls past the bound are refused."""
    calls = [(queued(), "k"), (queued(), "k"), (queued(), None), (queued(), None),
             (queued(), None)]
    answers = await store.invocations.enqueue_many(calls, key_ttl_us=HOUR_US, max_queued=3)
    first = calls[0][0].id
    assert answers[:4] == [(first, True), (first, False), (calls[2][0].id, True),
                           (calls[3][0].id, True)]
    assert isinstance(answers[4], AdmissionRejected)
    assert await store.invocations.queued_count() == 3
    with pytest.raises(NotFound):
        await store.invocations.get(calls[4][0].id)
    with pytest.raises(NotFound):  # the repeated key's call was never inserted
        await store.invocations.get(calls[1][0].id)
