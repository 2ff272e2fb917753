"""The invocation service over a real SQLite store and a fake executor: the dispatcher's
room, the retry policy, the never-started refund, sync records and their cancellation."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from faas.config import Settings
from faas.errors import SandboxError
from faas.executors.fake import FakeExecutor
from faas.functions import Functions
from faas.invocations.codec import encode_call
from faas.invocations.service import Invocations
from faas.metrics import Metrics
from faas.models import ExecutionSpec, InvocationResult, InvokeRequest
from faas.orchestrator import Orchestrator
from faas.store.invocation_records import InvocationRecord

DONE = {"succeeded", "failed", "timed_out", "error", "cancelled"}


@dataclasses.dataclass
class World:
    invocations: Invocations
    orchestrator: Orchestrator
    executor: FakeExecutor
    functions: Functions


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = Settings(executors=("sandbox",), default_executor="sandbox",
                        data_dir=tmp_path / "data", max_concurrency=2, max_queue=4)
    executor = FakeExecutor(name="sandbox")
    functions = await Functions.open(settings, Metrics())
    orchestrator = Orchestrator(settings, {"sandbox": executor}, functions.metrics)
    invocations = await Invocations.open(settings, functions, orchestrator)
    yield World(invocations, orchestrator, executor, functions)
    invocations.stop_claiming()
    await orchestrator.shutdown(1)
    await invocations.close(1)
    await functions.close()


def request(*command: str) -> InvokeRequest:
    return InvokeRequest(command=list(command) or ["x"])


async def final(world: World, invocation_id: str, timeout_s: float = 20) -> InvocationRecord:
    async with asyncio.timeout(timeout_s):
        while True:
            record = await world.invocations.get(invocation_id, wait_s=1)
            if record.status in DONE:
                return record


async def test_async_calls_never_take_more_than_the_free_admission_slots(world: World) -> None:
    peak = 0
    release = asyncio.Event()

    async def slow(spec: ExecutionSpec) -> InvocationResult:
        nonlocal peak
        peak = max(peak, world.executor.running)
        await release.wait()
        return InvocationResult(exit_code=0)

    world.executor.handler = slow
    # A sync call holds one of the two slots: one async call may run, none may wait.
    sync = asyncio.ensure_future(world.orchestrator.invoke("g", request(), "sync"))
    async with asyncio.timeout(10):
        while world.executor.running < 1:
            await asyncio.sleep(0.01)
    ids = [(await world.invocations.accept("f", request(), "r", None))[0] for _ in range(6)]
    async with asyncio.timeout(10):
        while world.executor.running < 2:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # room for a wrong claim to happen
    assert world.executor.running == 2 and world.orchestrator.admission.waiting == 0
    assert world.invocations.dispatcher.running == 1
    release.set()
    await sync
    records = [await final(world, i) for i in ids]
    assert {r.status for r in records} == {"succeeded"} and peak == 2


async def test_a_platform_error_is_retried_then_recorded_as_error(world: World) -> None:
    async def broken(spec: ExecutionSpec) -> InvocationResult:
        raise SandboxError("/var/lib/secret path exploded")

    world.executor.handler = broken
    invocation_id, _ = await world.invocations.accept("f", request(), "req-1", None)
    record = await final(world, invocation_id, timeout_s=30)
    assert (record.status, record.attempts, record.max_attempts) == ("error", 3, 3)
    assert len(world.executor.calls) == 3
    assert record.error is not None and "/var/lib" not in record.error
    assert "req-1" in record.error


async def test_the_commands_own_failure_is_not_retried_by_default(world: World) -> None:
    async def fails(spec: ExecutionSpec) -> InvocationResult:
        return InvocationResult(exit_code=3, error="exited with status 3", stderr=b"no")

    world.executor.handler = fails
    invocation_id, _ = await world.invocations.accept("f", request(), "r", None)
    record = await final(world, invocation_id)
    assert (record.status, record.attempts, record.exit_code, record.stderr) == (
        "failed", 1, 3, b"no")


async def test_a_call_claimed_as_the_server_stops_is_queued_again_unspent(
        world: World) -> None:
    world.invocations.stop_claiming()  # this test drives one run by hand
    invocation_id = uuid.uuid4().hex
    await world.invocations.store.enqueue(InvocationRecord(
        id=invocation_id, request_id="r", function_id="f", version=None, mode="async",
        status="queued", accepted_at=1, max_attempts=3, request=encode_call(request(), None)),
        max_queued=10)
    [claimed] = await world.invocations.store.claim(world.invocations.owner, 1)
    assert claimed.attempts == 1
    world.orchestrator.accepting = False
    run = world.invocations.dispatcher
    await run._run(claimed)  # the window between the claim and the start
    record = await world.invocations.store.get(invocation_id)
    assert (record.status, record.attempts, record.owner) == ("queued", 0, None)
    assert world.executor.calls == []


async def test_output_is_cut_to_the_record_cap_with_the_flag_set(tmp_path: Path) -> None:
    settings = Settings(executors=("sandbox",), data_dir=tmp_path / "data")
    settings = dataclasses.replace(settings, invocations=dataclasses.replace(
        settings.invocations, record_output_bytes=10))
    executor = FakeExecutor(name="sandbox")
    functions = await Functions.open(settings, Metrics())
    orchestrator = Orchestrator(settings, {"sandbox": executor}, functions.metrics)
    invocations = await Invocations.open(settings, functions, orchestrator)
    try:
        invocation_id, _ = await invocations.accept(
            "f", InvokeRequest.model_validate({"command": ["x"], "payload": base64.b64encode(
                b"0123456789abcdef").decode()}), "r", None)
        async with asyncio.timeout(20):
            while (record := await invocations.get(invocation_id, 1)).status not in DONE:
                pass
        assert (record.stdout, record.stdout_truncated, record.stderr_truncated) == (
            b"0123456789", True, False)
    finally:
        invocations.stop_claiming()
        await orchestrator.shutdown(1)
        await invocations.close(1)
        await functions.close()


async def test_a_sync_call_is_found_while_running_and_recorded_once_it_ends(
        world: World) -> None:
    release = asyncio.Event()

    async def slow(spec: ExecutionSpec) -> InvocationResult:
        await release.wait()
        return InvocationResult(stdout=b"done", exit_code=0)

    world.executor.handler = slow
    work = asyncio.ensure_future(world.orchestrator.invoke("f", request(), "sync-req"))
    call = world.invocations.sync_started("f", None, "sync-req", 1, work)
    assert (await world.invocations.get(call.record.id)).status == "running"
    release.set()
    world.invocations.sync_ended(call, await work, None)
    record = await final(world, call.record.id)
    assert (record.status, record.stdout, record.mode) == ("succeeded", b"done", "sync")
    async with asyncio.timeout(10):  # written in the background, then let go of
        while call.record.id in world.invocations.live.calls:
            await asyncio.sleep(0.01)
    stored = await world.invocations.store.get(call.record.id)
    assert (stored.status, stored.stdout, stored.request_id) == ("succeeded", b"done",
                                                                 "sync-req")


async def test_a_delete_cancels_a_running_sync_call(world: World) -> None:
    async def forever(spec: ExecutionSpec) -> InvocationResult:
        await asyncio.sleep(3600)
        return InvocationResult()

    world.executor.handler = forever
    work = asyncio.ensure_future(world.orchestrator.invoke("f", request(), "s"))
    call = world.invocations.sync_started("f", None, "s", 1, work)
    async with asyncio.timeout(5):
        while world.executor.running == 0:
            await asyncio.sleep(0.01)
    cancelled = await world.invocations.cancel(call.record.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(asyncio.CancelledError):
        await work
    world.invocations.sync_ended(call, None, None)
    record = await final(world, call.record.id)
    assert record.status == "cancelled" and "DELETE" in (record.error or "")
    assert world.executor.running == 0


async def test_a_sync_call_written_while_a_list_runs_is_still_listed(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record leaves the live calls when it is written: a listing whose store query ran
    just before that write must still find it (it did not, under load in CI)."""
    work = asyncio.ensure_future(world.orchestrator.invoke("f", request(), "racy"))
    call = world.invocations.sync_started("f", None, "racy", 1, work)
    result = await work
    store = world.invocations.store
    query = store.list_records

    async def written_during_the_query(**kwargs: object) -> object:
        page = await query(**kwargs)  # type: ignore[arg-type]
        world.invocations.sync_ended(call, result, None)
        async with asyncio.timeout(10):
            while call.record.id in world.invocations.live.calls:
                await asyncio.sleep(0.01)
        return page

    monkeypatch.setattr(store, "list_records", written_during_the_query)
    page = await world.invocations.list_records(function_id="f")
    assert [record.id for record in page.items] == [call.record.id]
    assert page.items[0].status == "succeeded"
