"""The QEMU microVM executor end to end: real VMs (TCG here), no mocks."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
from microvm_support import assert_no_vm_leaks, make_spec, vmm_processes

from faas.errors import SandboxError
from faas.executors.microvm import MicroVMSettings, QemuExecutor
from faas.executors.microvm.config import VMConfig
from faas.executors.microvm.qemu import QemuDriver, qemu_binary
from faas.executors.microvm.vm import MicroVM, VMState
from faas.images.build import GuestImages
from faas.protocol import Kind, read_frame

pytestmark = pytest.mark.microvm


async def test_stdout_stderr_exit_code_and_binary_payload_round_trip(
    qemu: QemuExecutor, no_vm_leaks: None
) -> None:
    data = bytes(range(256)) * 16
    r = await qemu.run(make_spec(["/bin/sh", "-c", "cat; echo out-line; echo err-line >&2; exit 7"],
                                 payload=data))
    assert r.stdout == data + b"out-line\n"
    assert r.stderr == b"err-line\n"
    assert r.exit_code == 7 and r.signal is None and r.error == "exited with status 7"
    assert not r.timed_out and r.executor == "qemu"
    info = r.extra["microvm"]
    assert info["driver"] == "qemu" and info["accel"] in ("tcg", "kvm")
    assert 0 < info["ready_ms"] < info["reply_ms"] <= r.duration_ms


async def test_success_runs_unprivileged_with_no_error(qemu: QemuExecutor) -> None:
    r = await qemu.run(make_spec(["id", "-u"]))
    assert (r.stdout, r.exit_code, r.error) == (b"65534\n", 0, None)


async def test_env_is_exactly_the_request_env(qemu: QemuExecutor) -> None:
    r = await qemu.run(make_spec(["/usr/bin/env"], env={"GREETING": "hello world", "X": "1=2"}))
    assert sorted(r.stdout.decode().splitlines()) == ["GREETING=hello world", "X=1=2"]


async def test_command_not_found(qemu: QemuExecutor) -> None:
    r = await qemu.run(make_spec(["no-such-command", "arg"]))
    assert r.exit_code == 127 and r.error == "command not found: no-such-command"


async def test_output_over_the_limit_is_truncated(qemu: QemuExecutor) -> None:
    r = await qemu.run(make_spec(["head", "-c", "3000000", "/dev/zero"], output_bytes=100_000))
    assert r.stdout == b"\0" * 100_000 and r.stdout_truncated and r.exit_code == 0


async def test_timeout_destroys_the_vm_and_keeps_partial_output(
    qemu: QemuExecutor, no_vm_leaks: None
) -> None:
    started = time.monotonic()
    r = await qemu.run(make_spec(["/bin/sh", "-c", "echo started; sleep 600"], timeout_s=10))
    elapsed = time.monotonic() - started
    assert r.timed_out and r.error and "timed out" in r.error
    assert r.stdout == b"started\n"
    assert elapsed < 10 + 1.0


async def test_deadline_during_boot_is_a_timeout(qemu: QemuExecutor, no_vm_leaks: None) -> None:
    started = time.monotonic()
    r = await qemu.run(make_spec(["true"], timeout_s=0.5))
    assert r.timed_out and r.error == "timed out while the VM was booting"
    assert time.monotonic() - started < 2.0


async def test_cancellation_kills_the_vm(qemu: QemuExecutor, run_dir: Path) -> None:
    task = asyncio.ensure_future(qemu.run(make_spec(["sleep", "600"])))
    for _ in range(200):
        if vmm_processes(run_dir):
            break
        await asyncio.sleep(0.02)
    assert vmm_processes(run_dir), "the VM never started"
    await asyncio.sleep(1.0)  # mid-boot
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_no_vm_leaks(run_dir)


async def test_aclose_destroys_running_vms(settings: MicroVMSettings, images: GuestImages,
                                           run_dir: Path) -> None:
    executor = QemuExecutor(settings, images)
    task = asyncio.ensure_future(executor.run(make_spec(["sleep", "600"])))
    await asyncio.sleep(1.0)
    await executor.aclose()
    task.cancel()
    with pytest.raises((asyncio.CancelledError, SandboxError)):
        await task
    assert_no_vm_leaks(run_dir)


async def test_each_invocation_gets_a_fresh_vm(qemu: QemuExecutor) -> None:
    write = qemu.run(make_spec(["/bin/sh", "-c", "echo secret > /tmp/left-behind; ls /tmp"]))
    look = qemu.run(make_spec(["ls", "/tmp"]))
    first, second = await asyncio.gather(write, look)
    assert b"left-behind" in first.stdout
    assert b"left-behind" not in second.stdout
    third = await qemu.run(make_spec(["ls", "/tmp"]))
    assert b"left-behind" not in third.stdout


async def test_vcpus_and_memory_follow_the_limits(qemu: QemuExecutor) -> None:
    r = await qemu.run(make_spec(["/bin/sh", "-c", "nproc; grep MemTotal /proc/meminfo"],
                                 vcpus=2, memory_bytes=512 * 1024 * 1024))
    lines = r.stdout.decode().split("\n")
    assert lines[0] == "2"
    mem_kib = int(lines[1].split()[1])
    assert 400 * 1024 < mem_kib <= 512 * 1024
    assert r.extra["microvm"]["vcpus"] == 2 and r.extra["microvm"]["memory_mib"] == 512


async def test_guest_kernel_panic_is_a_clear_error(settings: MicroVMSettings,
                                                   images: GuestImages,
                                                   no_vm_leaks: None) -> None:
    # No initramfs init: the kernel tries to mount /dev/vda itself, but the
    # virtio drivers are modules, so it panics (and reboots, which ends QEMU).
    broken = dataclasses.replace(settings, extra_cmdline=("rdinit=/nonexistent",))
    executor = QemuExecutor(broken, images)
    started = time.monotonic()
    with pytest.raises(SandboxError, match=r"(?s)VM exited.*Kernel panic"):
        await executor.run(make_spec(["true"]))
    assert time.monotonic() - started < 20
    await executor.aclose()


async def test_agent_rejecting_garbage_is_reported(images: GuestImages, run_dir: Path,
                                                   no_vm_leaks: None) -> None:
    binary = qemu_binary()
    assert binary is not None
    async with MicroVM(QemuDriver(binary, "tcg"), VMConfig(images=images),
                       run_dir=run_dir) as vm:
        await vm.spawn()
        await vm.wait_ready()
        assert vm.state is VMState.READY
        reader, writer = vm._streams or (None, None)  # the raw channel, on purpose
        assert reader is not None and writer is not None
        writer.write(b"GARBAGE!" * 4)
        frame = await asyncio.wait_for(read_frame(reader), 30)
        assert frame is not None and frame.kind is Kind.ERROR
        assert "magic" in frame.header["error"]
    assert vm.state.value == "killed" and vm.pid is not None


async def test_kill_is_idempotent_and_works_before_spawn(images: GuestImages,
                                                         run_dir: Path) -> None:
    binary = qemu_binary()
    assert binary is not None
    vm = MicroVM(QemuDriver(binary, "tcg"), VMConfig(images=images), run_dir=run_dir)
    await vm.kill()
    await vm.kill()
    vm2 = MicroVM(QemuDriver(binary, "tcg"), VMConfig(images=images), run_dir=run_dir)
    await vm2.spawn()
    await vm2.kill()
    await vm2.kill()
    assert_no_vm_leaks(run_dir)


async def test_largest_payload_reaches_the_guest_intact(qemu: QemuExecutor) -> None:
    import hashlib
    import os

    data = os.urandom(6 * 1024 * 1024)  # the gateway's default payload limit
    r = await qemu.run(make_spec(["sha256sum"], payload=data))
    assert r.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


_ORPHAN_SCRIPT = """
import asyncio, sys
from pathlib import Path
from faas.executors.microvm.config import VMConfig
from faas.executors.microvm.qemu import QemuDriver, qemu_binary
from faas.executors.microvm.vm import MicroVM
from faas.images.build import guest_images

async def main():
    vm = MicroVM(QemuDriver(qemu_binary(), "tcg"), VMConfig(images=guest_images(build=False)),
                 run_dir=Path(sys.argv[1]))
    await vm.spawn()
    await vm.wait_ready()
    print("READY", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_vmm_dies_with_a_killed_server_and_its_files_are_swept(images: GuestImages,
                                                              run_dir: Path) -> None:
    import signal
    import subprocess
    import sys

    from faas.executors.microvm.workdirs import sweep_stale_workdirs

    server = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT, str(run_dir)],
                              stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == b"READY\n"
        assert vmm_processes(run_dir)
        assert sweep_stale_workdirs(run_dir) == []  # a live VM's folder is not stale
        server.send_signal(signal.SIGKILL)
        server.wait()
        deadline = time.monotonic() + 5
        while vmm_processes(run_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not vmm_processes(run_dir), "the VMM outlived its server"
        swept = sweep_stale_workdirs(run_dir)
        assert len(swept) == 1 and swept[0].name.startswith("faas-vm-")
        assert_no_vm_leaks(run_dir)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


async def test_commands_that_never_read_stdin_give_ordinary_results(
        settings: MicroVMSettings, images: GuestImages, run_dir: Path) -> None:
    """``true`` and ``head -c 1`` with 0 B, 70 KB and 6 MiB of stdin: the unread rest is
    dropped, every time (VMs restored from a snapshot, so the repeats stay cheap)."""
    executor = QemuExecutor(dataclasses.replace(settings, snapshots=True), images)
    try:
        for _ in range(2):
            for argv in (["true"], ["head", "-c", "1"]):
                for size in (0, 70 * 1024, 6 << 20):
                    r = await executor.run(make_spec(argv, payload=b"z" * size))
                    assert (r.exit_code, r.error, r.timed_out) == (0, None, False), \
                        (argv, size, r)
                    assert r.stdout == (b"z" if argv[0] == "head" and size else b"")
    finally:
        await executor.aclose()
    assert_no_vm_leaks(run_dir)


def test_leftovers_of_dead_servers_are_swept_at_start_and_a_live_ones_kept(
        tmp_path: Path) -> None:
    """A work folder of a dead server ("1x1"), with a process standing in for its
    VMM still running, is removed and the process killed when an executor starts;
    the same of this live server stays untouched."""
    import subprocess
    import sys

    from faas.instance import instance_id

    run = tmp_path / "run"
    run.mkdir()
    procs = {}
    for owner in ("1x1", instance_id()):
        folder = run / f"faas-vm-{owner}-abc123"
        folder.mkdir()
        (folder / "agent.sock").write_bytes(b"")
        # A stand-in VMM: its command line names its folder, as QEMU's does.
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                                 str(folder / "console.log")], start_new_session=True)
        stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        (folder / "vmm.pid").write_text(f"{proc.pid} {stat[19]}\n")
        procs[owner] = (folder, proc)
    try:
        QemuExecutor(MicroVMSettings(run_dir=run, pool_max=0, snapshots=False))
        dead_folder, dead_proc = procs["1x1"]
        live_folder, live_proc = procs[instance_id()]
        assert dead_proc.wait(timeout=5) == -9
        assert not dead_folder.exists()
        assert live_folder.is_dir() and live_proc.poll() is None
    finally:
        for _, proc in procs.values():
            proc.kill()
            proc.wait()


async def test_only_faas_errors_leave_run_and_they_name_no_host_path(
        settings: MicroVMSettings, images: GuestImages, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "secret-host-path"
    not_a_folder.write_text("a file where the run folder should be")
    executor = QemuExecutor(dataclasses.replace(settings, run_dir=not_a_folder), images)
    try:
        with pytest.raises(SandboxError) as caught:
            await executor.run(make_spec(["true"]))
        assert "secret-host-path" not in str(caught.value)
        assert str(tmp_path) not in str(caught.value)
    finally:
        await executor.aclose()
