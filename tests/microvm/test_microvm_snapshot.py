"""QEMU snapshot restore with real VMs: fresh randomness, private disks, fallback, pruning."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from microvm_support import assert_no_vm_leaks, make_spec

from faas.executors.microvm import MicroVMSettings, QemuExecutor
from faas.executors.microvm.config import VMConfig
from faas.executors.microvm.qemu import QemuDriver
from faas.executors.microvm.snapshot import KEEP_SNAPSHOTS, SnapshotStore, snapshot_key
from faas.images.manifest import GuestImages
from faas.instance import instance_id

pytestmark = pytest.mark.microvm

RANDOM_SCRIPT = ("od -An -tx1 -N16 /dev/urandom | tr -d ' \\n'; echo; "
                 "python3 -S -c 'import os, random; print(random.getrandbits(64), "
                 "os.urandom(8).hex())'; date +%s")


@pytest.fixture
async def restoring(settings: MicroVMSettings, images: GuestImages,
                    run_dir: Path) -> AsyncIterator[QemuExecutor]:
    executor = QemuExecutor(dataclasses.replace(settings, pool_max=0, snapshots=True), images)
    yield executor
    await executor.aclose()
    assert_no_vm_leaks(run_dir)


async def test_restored_vms_have_different_random_state_and_the_right_time(
    restoring: QemuExecutor
) -> None:
    results = [await restoring.run(make_spec(["/bin/sh", "-c", RANDOM_SCRIPT]))
               for _ in range(2)]
    for r in results:
        assert r.exit_code == 0 and r.start_kind == "restored", r
    first, second = (r.stdout.decode().split("\n") for r in results)
    assert first[0] != second[0]  # kernel CRNG: /dev/urandom
    assert first[1] != second[1]  # Python's random seed and os.urandom
    for lines in (first, second):
        assert abs(int(lines[2]) - time.time()) < 30  # clock set at resume, not snapshot time


async def test_restored_vms_get_private_copy_on_write_scratch(
    restoring: QemuExecutor
) -> None:
    first = await restoring.run(make_spec(["/bin/sh", "-c", "ls -A /tmp; head -c 1000000 "
                                           "/dev/urandom > /tmp/big; sync; echo done"]))
    assert first.stdout == b"lost+found\ndone\n" and first.start_kind == "restored", first
    store = restoring._snapshots
    assert store is not None
    [snap] = store._memo.values()
    digest = hashlib.sha256(snap.scratch.read_bytes()).hexdigest()
    second = await restoring.run(make_spec(["ls", "-A", "/tmp"]))
    assert second.stdout == b"lost+found\n"
    assert hashlib.sha256(snap.scratch.read_bytes()).hexdigest() == digest


async def test_a_broken_snapshot_falls_back_to_booting(
    settings: MicroVMSettings, images: GuestImages, run_dir: Path, tmp_path: Path
) -> None:
    executor = QemuExecutor(dataclasses.replace(settings, pool_max=0, snapshots=True), images)
    try:
        config = await executor.vm_config(make_spec(["true"]).limits)
        driver = await executor.driver()
        assert isinstance(driver, QemuDriver)
        broken = tmp_path / snapshot_key(driver, config)
        broken.mkdir()
        (broken / "state").write_bytes(b"not a QEMU migration stream")
        (broken / "scratch.ext4").write_bytes(bytes(1 << 20))
        (broken / "meta.json").write_text("{}")
        executor._snapshots = SnapshotStore(tmp_path, run_dir=run_dir, timeout_s=60)
        r = await executor.run(make_spec(["echo", "booted"]))
        assert r.stdout == b"booted\n" and r.start_kind == "cold", r
    finally:
        await executor.aclose()
    assert_no_vm_leaks(run_dir)


def test_snapshot_key_follows_the_images_and_the_vm_shape(
    images: GuestImages, tmp_path: Path
) -> None:
    driver = QemuDriver("/usr/bin/qemu-system-x86_64", "tcg")
    rootfs = tmp_path / "rootfs.ext4"
    rootfs.write_bytes(b"x")
    config = VMConfig(images=dataclasses.replace(images, rootfs=rootfs))
    key = snapshot_key(driver, config)
    assert snapshot_key(driver, dataclasses.replace(config, memory_mib=512)) != key
    assert snapshot_key(driver, dataclasses.replace(config, vcpus=2)) != key
    os.utime(rootfs, ns=(1, 1))  # a rebuilt root disk (with a new agent)
    assert snapshot_key(driver, config) != key


def test_prune_keeps_recent_snapshots_and_removes_abandoned_partials(tmp_path: Path) -> None:
    for i in range(KEEP_SNAPSHOTS + 3):
        (tmp_path / f"key{i}").mkdir()
        os.utime(tmp_path / f"key{i}", (i, i))
    (tmp_path / "keyx.partial-999999999").mkdir()
    (tmp_path / f"keyy.partial-{os.getpid()}").mkdir()  # a live builder: kept
    (tmp_path / f"keyz.partial-{instance_id()}").mkdir()  # a live server: kept
    (tmp_path / "keyw.partial-1x1").mkdir()  # a dead server's
    removed = SnapshotStore(tmp_path, run_dir=None, timeout_s=1).prune()
    assert sorted(p.name for p in removed) == ["key0", "key1", "key2", "keyw.partial-1x1",
                                               "keyx.partial-999999999"]
    assert (tmp_path / f"keyy.partial-{os.getpid()}").is_dir()
    assert (tmp_path / f"keyz.partial-{instance_id()}").is_dir()


async def test_restore_beats_boot(restoring: QemuExecutor) -> None:
    """Loose bound (CI is noisy): a restore reaches the agent well before a TCG boot would."""
    await restoring.run(make_spec(["true"]))  # the snapshot exists after this
    r = await restoring.run(make_spec(["true"]))
    assert r.start_kind == "restored" and r.start_ms is not None and r.start_ms < 1500, r
    await asyncio.sleep(0)


async def test_agent_v2_ping_resumes_with_a_fresh_hello_then_serves() -> None:
    """The re-handshake at the protocol level, through a pipe (no VM): HELLO lists the
    feature; PING (with the host's current time, so no clock is stepped) is answered
    with HELLO ``resumed``, after the warm-up, and requests are served as before."""
    import sys

    from faas.protocol import AgentReply, AgentRequest, Kind, encode_ping, read_frame

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "faas.agent", "--stdio",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdin and proc.stdout
    hello = await read_frame(proc.stdout)
    assert hello is not None and hello.kind is Kind.HELLO
    assert hello.header["agent"] == "4" and {"ping", "function", "secrets"} <= set(
        hello.header["features"])
    proc.stdin.write(encode_ping(os.urandom(64), time.time(), warmup=True))
    again = await read_frame(proc.stdout)
    assert again is not None and again.kind is Kind.HELLO and again.header["resumed"] is True
    proc.stdin.write(AgentRequest(["echo", "served"], {}).encode())
    reply = AgentReply.from_frame(await read_frame(proc.stdout))  # type: ignore[arg-type]
    assert reply.stdout == b"served\n" and reply.exit_code == 0
    proc.stdin.close()
    assert await asyncio.wait_for(proc.wait(), 10) == 0
