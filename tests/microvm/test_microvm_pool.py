"""Pre-started single-use microVM pools, with real QEMU VMs (TCG here), no mocks.

Pooled VMs are restored from the session's snapshot (taken once, then reused),
so each refill costs a fraction of a second instead of a 2.4 s boot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from microvm_support import assert_no_vm_leaks, make_spec, vmm_pids

from faas.executors.microvm import MicroVMSettings, QemuExecutor
from faas.images.manifest import GuestImages

pytestmark = pytest.mark.microvm


def pooled_settings(settings: MicroVMSettings, *, size: int = 1) -> MicroVMSettings:
    return dataclasses.replace(settings, pool_min=size, pool_max=size, snapshots=True)


@pytest.fixture
async def pooled(settings: MicroVMSettings, images: GuestImages,
                 run_dir: Path) -> AsyncIterator[QemuExecutor]:
    executor = QemuExecutor(pooled_settings(settings), images)
    yield executor
    await executor.aclose()
    assert_no_vm_leaks(run_dir)


async def wait_for_new_vm(run_dir: Path, old: set[int], timeout_s: float = 30.0) -> int:
    """The pid of a VMM not in ``old`` that has reached READY in a pool."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = set(vmm_pids(run_dir)) - old
        if new:
            return new.pop()
        await asyncio.sleep(0.05)
    raise AssertionError("the pool did not start a replacement VM")


async def test_a_pooled_vm_is_never_used_twice(pooled: QemuExecutor) -> None:
    script = "ls -A /tmp; echo secret > /tmp/left-behind; echo $$ > /tmp/pid"
    seen = []
    for _ in range(3):
        await pooled.prewarm(ready=1)
        r = await pooled.run(make_spec(["/bin/sh", "-c", script]))
        assert r.exit_code == 0, r
        assert r.start_kind == "warm" and r.start_ms is not None and r.start_ms < 1000
        seen.append(r.stdout)
    # Every invocation found a /tmp with nothing but the filesystem's own folder.
    assert seen == [b"lost+found\n"] * 3


async def test_pool_stats_name_the_class(pooled: QemuExecutor) -> None:
    assert pooled.pool_stats() == []  # nothing is started before the first use
    await pooled.prewarm(ready=1)
    [(name, ready, starting)] = pooled.pool_stats()
    assert name.startswith("1vcpu-256mib") and ready == 1 and starting == 0


async def test_a_killed_pooled_vm_is_replaced_and_never_handed_out(
    pooled: QemuExecutor, run_dir: Path
) -> None:
    await pooled.prewarm(ready=1)
    [victim] = vmm_pids(run_dir)
    os.kill(victim, signal.SIGKILL)
    # At once: the dead VM fails the health check, the request gets another one.
    r = await pooled.run(make_spec(["true"]))
    assert r.exit_code == 0 and r.error is None, r
    assert r.start_kind in ("restored", "cold")
    # And without a request: the keeper notices a dead pooled VM and replaces it.
    await pooled.prewarm(ready=1)
    [second] = vmm_pids(run_dir)
    os.kill(second, signal.SIGKILL)
    third = await wait_for_new_vm(run_dir, {victim, second})
    await pooled.prewarm(ready=1)
    r = await pooled.run(make_spec(["true"]))
    assert r.exit_code == 0 and r.start_kind == "warm", r
    assert third not in vmm_pids(run_dir)  # that VM was used once and destroyed


async def test_a_burst_larger_than_the_pool_falls_back_and_never_fails(
    pooled: QemuExecutor
) -> None:
    await pooled.prewarm(ready=1)
    results = await asyncio.gather(*(pooled.run(make_spec(["/bin/sh", "-c", "echo ok"]))
                                     for _ in range(4)))
    assert [r.stdout for r in results] == [b"ok\n"] * 4
    kinds = sorted(r.start_kind or "" for r in results)
    assert "warm" in kinds and len([k for k in kinds if k in ("restored", "cold")]) >= 2


async def test_pools_drain_on_close_even_while_filling(
    settings: MicroVMSettings, images: GuestImages, run_dir: Path
) -> None:
    executor = QemuExecutor(pooled_settings(settings, size=3), images)
    await executor.prewarm(ready=1)
    task = asyncio.ensure_future(executor.run(make_spec(["sleep", "600"])))
    await asyncio.sleep(0.3)  # the others are starting, one runs a command
    assert vmm_pids(run_dir)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await executor.aclose()
    await executor.aclose()  # idempotent
    assert_no_vm_leaks(run_dir)
    assert [p for p in run_dir.iterdir()] == []


async def test_constructing_and_asking_availability_starts_no_vm(
    images: GuestImages, run_dir: Path, vm_settings: MicroVMSettings
) -> None:
    """What ``faas doctor`` does: no pool, no snapshot, no VM."""
    executor = QemuExecutor(dataclasses.replace(vm_settings, run_dir=run_dir), images)  # pooled
    verdict = await executor.availability()
    assert verdict.usable, verdict.reason
    await asyncio.sleep(0.5)
    assert vmm_pids(run_dir) == [] and executor.pool_stats() == []
    await executor.aclose()
    assert_no_vm_leaks(run_dir)
