"""A deployed function's code at /function in microVMs: cold ones and pooled (restored) ones.

A pooled VM booted before the call was known: the bundle travels in the
REQUEST and the agent unpacks it into a read-only tmpfs. Also measures what a
1 MiB bundle adds to a pooled call (printed; run with ``-s`` to see it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from microvm_support import assert_no_vm_leaks, make_spec

from bundle_support import HOSTILE, amake_bundle, data_folder, expected
from faas.errors import ExecutorUnavailable, ValidationError
from faas.executors.microvm import MicroVMSettings, QemuExecutor
from faas.executors.microvm import executor as microvm_executor
from faas.executors.microvm.config import VMConfig
from faas.executors.microvm.vm import MicroVM
from faas.images.manifest import GuestImages

pytestmark = pytest.mark.microvm
HANDLER = ["python3", "/function/handler.py"]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    folder = data_folder()
    yield folder
    shutil.rmtree(folder)


@pytest.fixture
async def pooled(settings: MicroVMSettings, images: GuestImages,
                 run_dir: Path) -> AsyncIterator[QemuExecutor]:
    executor = QemuExecutor(dataclasses.replace(settings, pool_min=2, pool_max=2,
                                                snapshots=True), images)
    yield executor
    await executor.aclose()
    assert_no_vm_leaks(run_dir)


async def test_cold_vm_shows_the_bundle_read_only(qemu: QemuExecutor, data_dir: Path) -> None:
    bundle = await amake_bundle(data_dir, "cold")
    result = await qemu.run(make_spec(HANDLER, payload=b"hi", bundle=bundle))
    assert (result.exit_code, result.stdout.decode()) == (0, expected("cold", "hi")), result
    # One VM per call: the mount table first, then every attempt to change /function.
    hostile = await qemu.run(make_spec(
        ["sh", "-c", "grep ' /function ' /proc/self/mounts; " + HOSTILE], bundle=bundle))
    lines = hostile.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(b"function /function tmpfs"), hostile
    options = lines[0].split()[3].split(b",")
    assert b"ro" in options and b"nosuid" in options and b"nodev" in options, hostile
    bare = await qemu.run(make_spec(["sh", "-c", "ls -A /function; echo done"]))
    assert bare.stdout == b"done\n", bare  # the image's empty mount point, nothing mounted


async def test_pooled_vms_each_see_their_own_bundle(pooled: QemuExecutor,
                                                    data_dir: Path) -> None:
    one, two = await amake_bundle(data_dir, "one"), await amake_bundle(data_dir, "two")
    await pooled.prewarm(ready=2)
    first, second = await asyncio.gather(
        pooled.run(make_spec(HANDLER, payload=b"a", bundle=one)),
        pooled.run(make_spec(HANDLER, payload=b"b", bundle=two)))
    assert first.stdout.decode() == expected("one", "a"), first
    assert second.stdout.decode() == expected("two", "b"), second
    assert (first.start_kind, second.start_kind) == ("warm", "warm"), (first, second)
    hostile = await pooled.run(make_spec(["sh", "-c", HOSTILE], bundle=one))
    assert (hostile.exit_code, hostile.stdout) == (0, b""), hostile


async def test_what_a_1mib_bundle_adds_to_a_pooled_call(pooled: QemuExecutor,
                                                        data_dir: Path) -> None:
    small = await amake_bundle(data_dir, "small")
    big = await amake_bundle(data_dir, "big", padding=1 << 20)
    timings: dict[str, list[float]] = {"none": [], "tiny": [], "1MiB": []}
    for _ in range(3):
        for name, bundle in (("none", None), ("tiny", small), ("1MiB", big)):
            await pooled.prewarm(ready=1)  # every call gets a pooled VM
            started = time.monotonic()
            result = await pooled.run(make_spec(["cat"], payload=b"x", bundle=bundle))
            timings[name].append((time.monotonic() - started) * 1000)
            assert result.exit_code == 0 and result.start_kind == "warm", result
    medians = {name: statistics.median(ms) for name, ms in timings.items()}
    print(f"\npooled call medians (ms, 3 each): {medians}")


async def test_a_bundle_call_to_an_agent_without_the_feature_is_refused_clearly(
        qemu: QemuExecutor, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image built before agent 3 (HELLO without "function"): refused, never run bare."""
    bundle = await amake_bundle(data_dir, "old")
    acquire = qemu._acquire

    async def old_agent(config: VMConfig, deadline: float, *,
                        pooled: bool = True) -> tuple[MicroVM, str]:
        vm, kind = await acquire(config, deadline, pooled=pooled)
        vm.hello = {"agent": "2", "features": ["ping"]}
        return vm, kind

    monkeypatch.setattr(qemu, "_acquire", old_agent)
    with pytest.raises(ExecutorUnavailable, match=r"agent \(version 2\) cannot show a "
                       r"function's code at /function; rebuild the guest image"):
        await qemu.run(make_spec(HANDLER, bundle=bundle))


async def test_code_that_would_not_fit_the_vm_is_refused_before_any_vm_starts(
        qemu: QemuExecutor, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        run_dir: Path) -> None:
    """The tar, its frame and the tmpfs copy all live in guest memory: a bundle over a
    third of the VM is a 400 naming the sizes (the factor raised here so a small
    bundle crosses it; no VM boots)."""
    bundle = await amake_bundle(data_dir, "fat")
    monkeypatch.setattr(microvm_executor, "_CODE_MEMORY_FACTOR", 1 << 20)
    with pytest.raises(ValidationError, match=r"bytes as a tar\) does not fit a VM of "
                       r"\d+ MiB: ask for more memory"):
        await qemu.run(make_spec(HANDLER, bundle=bundle))
    assert_no_vm_leaks(run_dir)
