"""Invocation records on both engines: round trips, listing, settle, requeue and cancel.

The queue itself (claim, idempotency, admission, recovery, pruning, callbacks) is in
``test_store_invocation_queue.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from invocation_helpers import ROOMY, ended, new_id, outcome, queued

from faas.errors import Conflict, NotFound, ValidationError
from faas.store import Store
from faas.store.invocation_records import (
    CALLBACK_PENDING,
    CANCELLED,
    MAX_RECORD_PAGE,
    QUEUED,
    RUNNING,
    InvocationRecord,
    now_us,
)


def listed(record: InvocationRecord) -> InvocationRecord:
    """How ``list_records`` shows a record: without its output and request."""
    return replace(record, stdout=b"", stderr=b"", request=None)


async def test_every_field_of_an_enqueued_call_reads_back(store: Store) -> None:
    full = queued(
        "full", accepted_at=1_700_000_000_123_456, version=7, request=b"\x00\xff{not json",
        max_attempts=5, retry_timeouts=True, retry_failures=True, concurrency_cap=2,
        output_encoding="base64", not_before=12, tenant="team-a",
        callback_url="https://example.com/hook?a=1", error="earlier try failed",
        stdout=b"out\x00\xfe", stderr=b"\xc3(", stdout_truncated=True, stderr_truncated=True,
        start_ms=1.25, duration_ms=0.5, exit_code=3, signal=9, executor="sandbox",
        start_kind="warm", callback_attempts=2, callback_error="e",
        callback_delivered_at=5, callback_next_at=6, callback_state="pending")
    # Every nullable field null, every flag off: none of them is given a value on the way.
    bare = queued("bare", version=None, request=None)
    for record in (full, bare):
        assert await store.invocations.enqueue(record, max_queued=ROOMY) == (record.id, True)
        assert await store.invocations.get(record.id) == record
    got = await store.invocations.get(full.id)
    assert isinstance(got.stdout, bytes) and isinstance(got.request, bytes)
    assert got.retry_timeouts is True and got.stderr_truncated is True
    assert (await store.invocations.get(bare.id)).retry_failures is False


async def test_a_settled_sync_record_reads_back_whole(store: Store) -> None:
    record = ended("failed", version=None, executor="process", start_kind="cold",
                   start_ms=12.5, duration_ms=99.0, exit_code=1, stdout=b"\x00bin",
                   stderr=b"oops", stdout_truncated=True)
    assert await store.invocations.settle((), [record]) == set()
    assert await store.invocations.get(record.id) == record


async def test_unknown_and_malformed_ids(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.invocations.get(new_id())
    for bad in ("", "x" * 32, new_id().upper(), new_id()[:31], new_id() + "0", "../etc"):
        with pytest.raises(ValidationError):
            await store.invocations.get(bad)
        with pytest.raises(ValidationError):
            await store.invocations.cancel(bad)
        with pytest.raises(ValidationError):
            await store.invocations.enqueue(queued(id=bad), max_queued=ROOMY)
    with pytest.raises(ValidationError):  # only a queued call is enqueued
        await store.invocations.enqueue(replace(queued(), status=RUNNING), max_queued=ROOMY)


async def test_list_is_newest_first_and_filters(store: Store) -> None:
    base = 1_000_000_000_000
    a1 = queued("a", accepted_at=base + 1)
    b1 = ended("succeeded", function_id="b", accepted_at=base + 2)
    a2 = ended("failed", function_id="a", accepted_at=base + 3, stdout=b"big")
    b2 = queued("b", accepted_at=base + 4)
    for record in (a1, b2):
        await store.invocations.enqueue(record, max_queued=ROOMY)
    await store.invocations.settle((), [b1, a2])

    async def ids(function_id: str | None = None, status: str | None = None,
                  since: int | None = None) -> list[str]:
        page = await store.invocations.list_records(function_id=function_id, status=status,
                                                    since=since)
        assert page.next_cursor is None
        return [r.id for r in page.items]

    page = await store.invocations.list_records()
    assert list(page.items) == [listed(r) for r in (b2, a2, b1, a1)]
    assert await ids(function_id="a") == [a2.id, a1.id]
    assert await ids(status=QUEUED) == [b2.id, a1.id]
    assert await ids(status="failed") == [a2.id]
    assert await ids(since=base + 2) == [b2.id, a2.id, b1.id]
    assert await ids(since=base + 3, function_id="b") == [b2.id]
    assert await ids(function_id="a", status="succeeded") == []
    assert await ids(function_id="nobody") == []


async def test_paging_has_no_repeats_or_gaps_while_calls_arrive(store: Store) -> None:
    base = 2_000_000_000_000
    # Ties on accepted_at are ordered by id, across page boundaries too.
    records = [queued(f"f{n % 3}", accepted_at=base + n // 4) for n in range(37)]
    for record in records:
        await store.invocations.enqueue(record, max_queued=ROOMY)
    expected = [r.id for r in sorted(records, key=lambda r: (r.accepted_at, r.id),
                                     reverse=True)]
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.invocations.list_records(limit=5, cursor=cursor)
        assert len(page.items) <= 5
        seen += [r.id for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        # Newer calls arrive between pages: they are before the cursor, never on later pages.
        await store.invocations.enqueue(queued("late"), max_queued=ROOMY)
        await store.invocations.settle((), [ended(function_id="late")])
    assert seen == expected


async def test_bad_limits_cursors_and_statuses_are_refused(store: Store) -> None:
    limits: list[Any] = [0, -1, MAX_RECORD_PAGE + 1, True, 2.0, "5"]
    for limit in limits:
        with pytest.raises(ValidationError, match="limit"):
            await store.invocations.list_records(limit=limit)
    assert (await store.invocations.list_records(limit=MAX_RECORD_PAGE)).items == ()
    for cursor in ("!!!", "bm90IGFuIGlk", "4pyT", "MTI6eHl6", ""):
        with pytest.raises(ValidationError, match="cursor"):
            await store.invocations.list_records(cursor=cursor)
    for status in ("done", "QUEUED", ""):
        with pytest.raises(ValidationError, match="status"):
            await store.invocations.list_records(status=status)


async def test_settle_writes_only_over_the_owners_running_row(store: Store) -> None:
    mine, theirs, cancelled = (queued(callback_url=None) for _ in range(3))
    for record in (mine, theirs, cancelled):
        await store.invocations.enqueue(record, max_queued=ROOMY)
    assert len(await store.invocations.claim("owner-a", 3)) == 3
    await store.invocations.cancel(cancelled.id)
    sync = ended(function_id="sync")

    result = outcome("succeeded", stdout=b"\xffok", stderr=b"e", exit_code=0,
                     executor="sandbox", start_kind="cold", start_ms=3.5, duration_ms=8.0,
                     stdout_truncated=True)
    written = await store.invocations.settle(
        [(mine.id, "owner-a", result), (theirs.id, "owner-b", result),
         (cancelled.id, "owner-a", result)], [sync])
    assert written == {mine.id}
    got = await store.invocations.get(mine.id)
    assert (got.status, got.finished_at, got.stdout, got.stderr, got.exit_code) == (
        "succeeded", result.finished_at, b"\xffok", b"e", 0)
    assert (got.executor, got.start_kind, got.start_ms, got.duration_ms) == (
        "sandbox", "cold", 3.5, 8.0)
    assert got.stdout_truncated and not got.stderr_truncated
    assert got.request is None and got.owner is None
    assert (got.callback_state, got.callback_next_at) == (None, None)
    still = await store.invocations.get(theirs.id)
    assert (still.status, still.owner, still.request) == (RUNNING, "owner-a", theirs.request)
    assert (await store.invocations.get(cancelled.id)).status == CANCELLED
    assert await store.invocations.get(sync.id) == sync
    # Once final, the owner writes nothing more over it either.
    assert await store.invocations.settle([(mine.id, "owner-a", outcome("failed"))]) == set()
    assert (await store.invocations.get(mine.id)).status == "succeeded"


async def test_settle_inserts_and_ends_in_one_transaction(store: Store) -> None:
    call = queued()
    await store.invocations.enqueue(call, max_queued=ROOMY)
    await store.invocations.claim("owner", 1)
    clash = ended()
    await store.invocations.settle((), [clash])
    # An insert that fails takes the end written beside it down too.
    with pytest.raises(Conflict):
        await store.invocations.settle([(call.id, "owner", outcome())], [ended(), clash])
    assert (await store.invocations.get(call.id)).status == RUNNING
    assert len((await store.invocations.list_records(function_id="fn")).items) == 2


async def test_an_outcome_makes_a_callback_due_only_when_one_was_asked(store: Store) -> None:
    hooked = queued(callback_url="https://example.com/h")
    await store.invocations.enqueue(hooked, max_queued=ROOMY)
    await store.invocations.claim("owner", 1)
    result = outcome("timed_out", error="took too long")
    assert await store.invocations.settle([(hooked.id, "owner", result)]) == {hooked.id}
    got = await store.invocations.get(hooked.id)
    assert (got.status, got.error, got.request) == ("timed_out", "took too long", None)
    assert (got.callback_state, got.callback_next_at) == (CALLBACK_PENDING, result.finished_at)


async def test_requeue_puts_a_running_call_back_after_not_before(store: Store) -> None:
    call = queued()
    await store.invocations.enqueue(call, max_queued=ROOMY)
    await store.invocations.claim("owner", 1)
    later = now_us() + 3_600_000_000
    assert not await store.invocations.requeue(call.id, "other", not_before=0, error="x")
    assert await store.invocations.requeue(call.id, "owner", not_before=later, error="lost")
    got = await store.invocations.get(call.id)
    assert (got.status, got.owner, got.not_before, got.error, got.attempts) == (
        QUEUED, None, later, "lost", 1)
    assert got.request == call.request
    assert await store.invocations.claim("owner", 5) == []
    assert not await store.invocations.requeue(call.id, "owner", not_before=0, error="x")

    await store.invocations.cancel(call.id)
    again = queued()
    await store.invocations.enqueue(again, max_queued=ROOMY)
    await store.invocations.claim("owner", 1)
    assert await store.invocations.requeue(again.id, "owner", not_before=now_us(), error="e")
    [retried] = await store.invocations.claim("owner-2", 1)
    assert (retried.id, retried.owner, retried.attempts) == (again.id, "owner-2", 2)


async def test_cancel_of_queued_running_final_and_unknown_calls(store: Store) -> None:
    running, waiting = queued(accepted_at=1), queued(accepted_at=2, callback_url="https://x/y")
    for record in (running, waiting):
        await store.invocations.enqueue(record, max_queued=ROOMY)
    [claimed] = await store.invocations.claim("owner", 1)
    assert claimed.id == running.id

    before = now_us()
    record, previous = await store.invocations.cancel(waiting.id)
    assert (record.status, previous) == (CANCELLED, QUEUED)
    assert record.finished_at is not None and record.finished_at >= before
    assert (record.request, record.callback_state) == (None, CALLBACK_PENDING)
    record, previous = await store.invocations.cancel(running.id)
    assert (record.status, previous, record.owner) == (CANCELLED, RUNNING, None)
    assert await store.invocations.get(running.id) == record

    for final in (running.id, waiting.id):
        with pytest.raises(Conflict):
            await store.invocations.cancel(final)
    sync = ended()
    await store.invocations.settle((), [sync])
    with pytest.raises(Conflict):
        await store.invocations.cancel(sync.id)
    with pytest.raises(NotFound):
        await store.invocations.cancel(new_id())
