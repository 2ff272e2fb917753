"""What a hostile command inside a microVM can and cannot do (real VMs, TCG here)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from microvm_support import host_children_and_threads, make_spec, vmm_pids

from faas.errors import SandboxError
from faas.executors.microvm import QemuExecutor
from faas.executors.microvm.config import VMConfig
from faas.executors.microvm.qemu import QemuDriver, qemu_binary
from faas.executors.microvm.vm import MicroVM
from faas.images.manifest import GuestImages
from faas.models import Limits

pytestmark = pytest.mark.microvm


def _host_ipv4_addresses() -> list[str]:
    addrs = {"127.0.0.1", "10.0.2.2", "169.254.169.254"}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent; picks the outbound address
            addrs.add(s.getsockname()[0])
        except OSError:
            pass
    return sorted(addrs)


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A TCP listener on all host addresses, counting the connections it accepts."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(peer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()
    assert not accepted, f"the guest reached the host listener from {accepted}"


async def test_no_network_interface_but_loopback(qemu: QemuExecutor) -> None:
    r = await qemu.run(make_spec(["ls", "/sys/class/net"]))
    assert r.stdout == b"lo\n"


async def test_host_and_gateway_are_unreachable(qemu: QemuExecutor, host_listener: int) -> None:
    code = (
        "import socket, sys\n"
        "for host in sys.argv[2:]:\n"
        "    try:\n"
        "        socket.create_connection((host, int(sys.argv[1])), timeout=2).close()\n"
        "        print(host, 'REACHED')\n"
        "    except OSError as exc:\n"
        "        print(host, 'blocked', exc.errno)\n"
    )
    hosts = _host_ipv4_addresses()
    r = await qemu.run(make_spec(["python3", "-c", code, str(host_listener), *hosts]))
    lines = r.stdout.decode().splitlines()
    assert len(lines) == len(hosts), r.stderr
    assert all("blocked" in line for line in lines), lines


#: Grows by 4 MiB of touched memory at a time (bytes, not a lazily zeroed
#: bytearray), printing the total after each step.
MEMORY_BOMB = """
b = []
while True:
    b.append(b"x" * (4 << 20))
    print(len(b) * 4, flush=True)
"""


async def test_memory_bomb_is_stopped_by_the_guest_oom_killer_at_the_vm_size(
    qemu: QemuExecutor,
) -> None:
    """The VM has the memory asked for (the guest kernel's MemTotal is that size
    less what the kernel keeps), and a bomb inside is SIGKILLed by the guest's OOM
    killer before it holds that much; the VM, and so the agent, survives."""
    asked_mib = 256
    r = await qemu.run(make_spec(
        ["/bin/sh", "-c", f"grep MemTotal /proc/meminfo; exec python3 -c '{MEMORY_BOMB}'"],
        memory_bytes=asked_mib << 20, timeout_s=90))
    assert not r.timed_out, r
    lines = r.stdout.decode().split("\n")
    mem_total_mib = int(lines[0].split()[1]) // 1024
    assert 0.8 * asked_mib <= mem_total_mib <= asked_mib, lines[0]
    assert r.signal == 9 and r.exit_code == 137, (r.exit_code, r.stderr[-300:])
    assert b"MemoryError" not in r.stderr, r.stderr[-300:]
    reached = int([line for line in lines[1:] if line][-1])
    assert asked_mib // 2 <= reached < mem_total_mib, (reached, mem_total_mib)
    after = await qemu.run(make_spec(["echo", "still fine"]))
    assert after.stdout == b"still fine\n"


async def test_fork_bomb_does_not_hurt_the_host(qemu: QemuExecutor, run_dir: Path) -> None:
    """The bomb hits the request's process limit inside the guest; the VMM never forks
    and keeps its few threads; the deadline ends it all."""
    worst = (0, 0)

    async def sample() -> None:
        nonlocal worst
        while True:
            for pid in vmm_pids(run_dir):
                children, threads = host_children_and_threads(pid)
                worst = (max(worst[0], children), max(worst[1], threads))
            await asyncio.sleep(0.1)

    sampler = asyncio.ensure_future(sample())
    started = time.monotonic()
    try:
        r = await qemu.run(make_spec(
            ["/bin/sh", "-c", "ulimit -p; bomb() { bomb | bomb & }; bomb; sleep 30"],
            timeout_s=15, pids=64))
    finally:
        sampler.cancel()
    assert time.monotonic() - started < 17
    assert r.stdout.startswith(b"64\n")  # the request's pids limit, as RLIMIT_NPROC
    assert b"Cannot fork" in r.stderr and r.timed_out
    assert worst[0] == 0, f"the VMM forked {worst[0]} host processes"
    assert 0 < worst[1] < 16, f"the VMM ran {worst[1]} threads"
    after = await qemu.run(make_spec(["echo", "still fine"]))
    assert after.stdout == b"still fine\n"


async def test_host_files_and_environment_are_invisible(qemu: QemuExecutor,
                                                        tmp_path: Path) -> None:
    marker = tmp_path / f"host-secret-{uuid.uuid4().hex}"
    marker.write_text("host secret")
    secret = uuid.uuid4().hex
    os.environ["FAAS_MICROVM_TEST_SECRET"] = secret
    try:
        script = (f"cat {marker}; ls /tmp; cat /work/main/pyproject.toml; "
                  "cat /proc/1/environ; env; ls /work; exit 0")
        r = await qemu.run(make_spec(["/bin/sh", "-c", script]))
    finally:
        del os.environ["FAAS_MICROVM_TEST_SECRET"]
    assert b"host secret" not in r.stdout
    assert secret.encode() not in r.stdout + r.stderr
    assert b"[project]" not in r.stdout
    assert b"No such file" in r.stderr


async def test_root_disk_is_read_only_and_scratch_is_writable(qemu: QemuExecutor) -> None:
    script = ("touch /usr/evil 2>/dev/null && echo usr-writable; "
              "touch /tmp/ok && echo tmp-writable; "
              "cat /sys/block/vda/ro; "
              "echo b > /proc/sysrq-trigger 2>/dev/null && echo sysrq-allowed; "
              "mount -t tmpfs x /mnt 2>/dev/null && echo mount-allowed; exit 0")
    r = await qemu.run(make_spec(["/bin/sh", "-c", script]))
    assert r.stdout == b"tmp-writable\n1\n", r.stdout


async def test_entropy_is_seeded_by_virtio_rng(qemu: QemuExecutor) -> None:
    script = ("cat /sys/devices/virtual/misc/hw_random/rng_current; "
              "python3 -c 'import os; print(len(os.getrandom(32, os.GRND_NONBLOCK)))'")
    r = await qemu.run(make_spec(["/bin/sh", "-c", script]))
    assert r.stdout == b"virtio_rng.0\n32\n", r.stderr


def _ids(pid: int) -> tuple[set[int], set[int]]:
    """(real/effective/saved/fs uids, the same gids) of a host process."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    field = {line.split(":")[0]: line.split()[1:] for line in status if ":" in line}
    return {int(u) for u in field["Uid"]}, {int(g) for g in field["Gid"]}


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root server can give QEMU a uid")
async def test_each_vmm_runs_as_a_host_uid_of_its_own(qemu: QemuExecutor) -> None:
    """Not root, not the containers' nobody (65534), not a namespace sandbox's uid
    (200000 + slot), and two VMs running at once never share one."""
    vms = await asyncio.gather(qemu.start_vm(Limits()), qemu.start_vm(Limits()))
    try:
        uids = []
        for vm in vms:
            assert vm.pid is not None
            vm_uids, vm_gids = _ids(vm.pid)
            assert len(vm_uids) == 1 and len(vm_gids) == 1, (vm_uids, vm_gids)
            uid = vm_uids.pop()
            assert uid not in (0, 65534) and not 200_000 <= uid < 300_000, uid
            assert vm_gids.pop() not in (0, 65534)
            uids.append(uid)
        assert uids[0] != uids[1], uids
    finally:
        for vm in vms:
            await vm.kill()


async def test_vmm_gets_none_of_the_servers_environment(
    qemu: QemuExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A guest that took over QEMU must not find the server's secrets in its environment."""
    monkeypatch.setenv("FAAS_TEST_SERVER_SECRET", "server-only-value")
    vm = await qemu.start_vm(Limits())
    try:
        assert vm.pid is not None
        environ = Path(f"/proc/{vm.pid}/environ").read_bytes()
        assert b"server-only-value" not in environ
        assert set(dict(e.split(b"=", 1) for e in environ.split(b"\0") if e)) <= {
            b"PATH", b"LANG", b"TMPDIR"}
    finally:
        await vm.kill()


async def test_guest_defence_in_depth(qemu: QemuExecutor) -> None:
    """Even a command that owned a guest kernel bug would have less to work with:
    no unprivileged user namespaces, no setuid/setgid file, KASLR not turned off,
    and no_new_privs on the command."""
    script = ("unshare -U true 2>/dev/null && echo USERNS-ALLOWED; "
              "echo setid: $(find / -xdev -type f -perm /6000 2>/dev/null); "
              "while read -r _d mnt _t opts _r; do [ \"$mnt\" = / ] && echo root: $opts; "
              "done < /proc/mounts; "
              "cat /proc/cmdline; grep NoNewPrivs /proc/self/status; exit 0")
    r = await qemu.run(make_spec(["/bin/sh", "-c", script]))
    lines = r.stdout.decode().splitlines()
    assert "USERNS-ALLOWED" not in lines, lines
    assert "setid:" in lines, lines  # no setuid/setgid file anywhere on the root disk
    root_opts = next(line for line in lines if line.startswith("root: ")).split()[1]
    assert "nosuid" in root_opts.split(","), root_opts
    cmdline = next(line for line in lines if "faas-init" in line)
    assert "nokaslr" not in cmdline.split(), cmdline
    assert lines[-1].split() == ["NoNewPrivs:", "1"], lines


async def test_guest_kernel_address_is_randomized(images: GuestImages, run_dir: Path) -> None:
    """KASLR really applies (not only "no nokaslr"): QEMU boots the bzImage, whose
    decompressor picks the offset. A guest made to panic prints it."""
    config = VMConfig(images=images, extra_cmdline=("rdinit=/nonexistent",))
    vm = MicroVM(QemuDriver(qemu_binary() or "qemu-system-x86_64", "tcg"), config,
                 run_dir=run_dir)
    try:
        with pytest.raises(SandboxError):
            async with asyncio.timeout(60):
                await vm.spawn()
                await vm.wait_ready()
        console = vm.console_tail(limit=8000)
    finally:
        await vm.kill()
    offsets = [line for line in console.splitlines() if "Kernel Offset:" in line]
    assert offsets, console[-1500:]
    assert "disabled" not in offsets[0] and "0x" in offsets[0], offsets
