"""Hostile commands against the Docker tier: each attack is tried for real."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_support import make_spec, while_running
from engine_http import Container, Daemon, DaemonError

from faas.executors.docker import MASKED_PATHS, REQUEST_LABEL, DockerExecutor

pytestmark = pytest.mark.docker

MiB = 1024 * 1024


def host_addresses() -> list[str]:
    """Addresses a container with a network could use to reach this host."""
    found = {"127.0.0.1", "172.17.0.1"}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5,
                             check=False).stdout
        found.update(a for a in out.split() if ":" not in a)
    return sorted(found)


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A TCP server on all host interfaces (as the gateway could be); yields its port."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    port = int(server.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, _ = server.accept()
                conn.sendall(b"REACHED-THE-HOST\n")
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join()
        server.close()


NET_PROBE = """
import socket, sys
port = int(sys.argv[1])
print("interfaces", sorted(name for _, name in socket.if_nameindex()))
for host in sys.argv[2:]:
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            print("CONNECTED", host, s.recv(100))
    except OSError as exc:
        print("blocked", host, type(exc).__name__)
try:
    socket.getaddrinfo("deb.debian.org", 80)
    print("DNS-RESOLVED")
except OSError:
    print("dns blocked")
"""


async def test_no_network_not_even_the_host_loopback(
    executor: DockerExecutor, host_listener: int
) -> None:
    # The probe itself works from the host: the listener is reachable there.
    with socket.create_connection(("127.0.0.1", host_listener), timeout=2) as s:
        assert s.recv(100) == b"REACHED-THE-HOST\n"
    hosts = host_addresses()
    result = await executor.run(make_spec(
        ["python3", "-c", NET_PROBE, str(host_listener), *hosts], timeout_s=60,
    ))
    out = result.stdout.decode()
    assert result.exit_code == 0, (out, result.stderr)
    assert "interfaces ['lo']" in out
    assert "CONNECTED" not in out and "REACHED-THE-HOST" not in out
    assert out.count("blocked") >= len(hosts)
    assert "DNS-RESOLVED" not in out


#: Mount points a container of this tier has: the image's root, Docker's own
#: proc/dev/sys/cgroup mounts and masked paths, the /tmp tmpfs and the three files
#: Docker writes per container. A host path bound in would add one.
EXPECTED_MOUNTS = {
    "/", "/proc", "/dev", "/dev/pts", "/dev/mqueue", "/dev/shm", "/sys", "/sys/fs/cgroup",
    "/tmp", "/etc/resolv.conf", "/etc/hostname", "/etc/hosts",
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}
#: The only host files bound into a container: Docker's per-container ones.
DOCKER_FILES = {"/etc/resolv.conf", "/etc/hostname", "/etc/hosts"}


async def test_host_files_are_unreachable(executor: DockerExecutor, tmp_path: Path) -> None:
    token = secrets.token_hex(16)
    secret = tmp_path / "host-secret.txt"
    secret.write_text(token)
    script = (
        f"cat {secret} /tmp/{secret.name} /host/etc/shadow; "
        "cat /etc/shadow; "
        "ls /proc/1/root/ >/dev/null; cat /proc/1/root/etc/shadow; "
        f"grep -rs {token} /etc /opt /root /home /var /srv /mnt /tmp | head -1; "
        "echo MOUNTINFO; cat /proc/self/mountinfo; "
        "exit 0"
    )
    result = await executor.run(make_spec(["sh", "-c", script], timeout_s=60))
    combined = result.stdout + result.stderr
    assert token.encode() not in combined
    assert b"Permission denied" in result.stderr  # the image's own shadow, as nobody
    # Nothing of the host's file system is bound in (root's hash is `*` on many
    # hosts, so looking for it proves nothing): every mount point is one Docker
    # makes for any container, and the only host files are Docker's own three.
    mounts = [line.split() for line in
              result.stdout.decode().split("MOUNTINFO\n", 1)[1].splitlines()]
    points = {m[4] for m in mounts if not m[4].startswith("/sys/fs/cgroup/")}
    extra = points - EXPECTED_MOUNTS - set(MASKED_PATHS)
    assert not extra, sorted(extra)
    host_fs = {m[4] for m in mounts if m[m.index("-") + 1] in ("ext4", "xfs", "btrfs")}
    assert host_fs <= DOCKER_FILES, host_fs



async def test_runs_as_nobody_with_no_privileges(executor: DockerExecutor) -> None:
    result = await executor.run(make_spec(["sh", "-c", "id -u; id -g; cat /proc/self/status"]))
    lines = result.stdout.decode().splitlines()
    assert lines[:2] == ["65534", "65534"]
    status = dict(line.split(":", 1) for line in lines[2:] if ":" in line)
    assert status["CapEff"].strip() == "0000000000000000"
    assert status["CapPrm"].strip() == "0000000000000000"
    assert status["CapBnd"].strip() == "0000000000000000"
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # a filter is installed


async def test_root_is_read_only_and_tmp_is_capped(executor: DockerExecutor) -> None:
    # /var/tmp and /run/lock are world-writable in the image, so only a read-only
    # root stops nobody there (EROFS); /etc would refuse nobody either way (EACCES).
    script = (
        "stat -c 'mode %a %n' /var/tmp /run/lock; "
        "touch /var/tmp/evil 2>&1; touch /run/lock/evil 2>&1; "
        "touch /etc/evil 2>&1 || echo root-read-only; "
        "touch /opt/evil 2>&1 || echo opt-read-only; "
        "echo ok > /tmp/ok && cat /tmp/ok; "
        "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1; "
        "du -k /tmp/fill"
    )
    result = await executor.run(make_spec(["sh", "-c", script], tmp_bytes=8 * MiB))
    out = result.stdout.decode()
    assert "mode 1777 /var/tmp" in out and "mode 1777 /run/lock" in out, out
    assert "touch: cannot touch '/var/tmp/evil': Read-only file system" in out, out
    assert "touch: cannot touch '/run/lock/evil': Read-only file system" in out, out
    assert "root-read-only" in out and "opt-read-only" in out
    assert "ok\n" in out
    assert "No space left on device" in out
    assert int(out.strip().splitlines()[-1].split()[0]) <= 8 * 1024


async def test_privileged_operations_fail(executor: DockerExecutor) -> None:
    script = (
        "mount -t tmpfs none /tmp 2>/dev/null && echo MOUNTED; "
        "python3 -c 'import ctypes; l=ctypes.CDLL(None); "
        "print(\"UNSHARED\" if l.unshare(0x10000000) == 0 else \"unshare blocked\")'; "
        "chroot / true 2>/dev/null && echo CHROOTED; "
        "exit 0"
    )
    result = await executor.run(make_spec(["sh", "-c", script]))
    out = result.stdout.decode()
    assert "MOUNTED" not in out and "CHROOTED" not in out and "UNSHARED" not in out
    assert "unshare blocked" in out


SYSCALL_PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
# x86_64 numbers: keyctl(KEYCTL_JOIN_SESSION_KEYRING), bpf(BPF_PROG_LOAD, NULL),
# ptrace(PTRACE_ATTACH, 1), perf_event_open(NULL), init_module, setuid(0).
probes = {
    "keyctl": (250, 1, 0, 0, 0, 0),
    "bpf": (321, 5, 0, 0),
    "ptrace": (101, 16, 1, 0, 0),
    "perf_event_open": (298, 0, 0, -1, -1, 0),
    "init_module": (175, 0, 0, 0),
    "setuid": (105, 0),
}
for name, args in probes.items():
    rc = libc.syscall(*[ctypes.c_long(a) for a in args])
    print(name, "ALLOWED" if rc >= 0 else "denied", os.strerror(ctypes.get_errno()))
"""


async def test_escape_syscalls_are_denied(executor: DockerExecutor) -> None:
    result = await executor.run(make_spec(["python3", "-c", SYSCALL_PROBE]))
    out = result.stdout.decode()
    assert result.exit_code == 0, (out, result.stderr)
    assert out.count("denied") == 6, out
    assert "ALLOWED" not in out


async def test_stricter_seccomp_profile(docker_image: str, tmp_path: Path) -> None:
    profile = tmp_path / "seccomp.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }))
    ex = DockerExecutor(default_image=docker_image, seccomp_profile=profile)
    try:
        result = await ex.run(make_spec(["mkdir", "/tmp/x"]))
    finally:
        await ex.aclose()
    assert result.exit_code != 0
    assert b"Operation not permitted" in result.stderr, result


async def test_other_invocations_are_invisible(executor: DockerExecutor) -> None:
    result = await executor.run(make_spec(["sh", "-c", "ls /proc | grep -c '^[0-9]'"]))
    # Only the shell and grep (and perhaps ls) of this invocation exist.
    assert int(result.stdout) <= 4, result.stdout


FORK_COUNTER = """
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as exc:
    print("fork refused after", n, exc.errno)
"""


async def test_fork_bomb_is_contained_by_the_pids_limit(executor: DockerExecutor) -> None:
    result = await executor.run(make_spec(["python3", "-c", FORK_COUNTER], pids=32, timeout_s=30))
    out = result.stdout.decode()
    assert "fork refused after" in out, (out, result.stderr)
    assert int(out.split()[3]) < 32


def cgroup_file(container_id: str, controller: str, name: str) -> Path:
    """A file of the container's cgroup on the host (cgroup v1 or v2, either driver)."""
    candidates = [
        Path(f"/sys/fs/cgroup/{controller}/docker/{container_id}/{name}"),
        Path(f"/sys/fs/cgroup/{controller}/system.slice/docker-{container_id}.scope/{name}"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/{name}"),
        Path(f"/sys/fs/cgroup/docker/{container_id}/{name}"),
    ]
    found = next((c for c in candidates if c.exists()), None)
    assert found is not None, f"no {name} for {container_id}: {candidates}"
    return found


async def test_classic_fork_bomb_is_killed_at_the_deadline(
    executor: DockerExecutor, docker_daemon: Daemon
) -> None:
    """The bomb fills the pids cgroup exactly to the request's limit, never past
    it, and the deadline ends it (the shell becomes `sleep` without forking, so
    it lives until then)."""
    peak = 0
    limit = ""
    request_id = f"fork-bomb-{secrets.token_hex(6)}"  # other runs may share the daemon

    async def sample() -> None:
        nonlocal peak, limit
        label = f"{REQUEST_LABEL}={request_id}"
        while not (found := await asyncio.to_thread(docker_daemon.containers, label,
                                                    everything=False)):
            await asyncio.sleep(0.02)
        current = cgroup_file(str(found[0].id), "pids", "pids.current")
        limit = (current.parent / "pids.max").read_text().strip()
        while True:
            with contextlib.suppress(OSError, ValueError):
                peak = max(peak, int(current.read_text()))
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    try:
        result = await executor.run(make_spec(
            ["sh", "-c", "b() { b | b & }; b; exec sleep 30"], pids=64, timeout_s=5,
            request_id=request_id,
        ))
    finally:
        sampler.cancel()
        await asyncio.wait([sampler])
    assert time.monotonic() - started < 20
    assert result.timed_out and result.exit_code is None, result
    assert limit == "64", limit
    assert 48 <= peak <= 64, peak  # the bomb reached the limit and stopped there
    assert b"fork" in result.stderr, result.stderr[-300:]  # "can't fork"
    remaining = docker_daemon.containers(f"{REQUEST_LABEL}={request_id}")
    assert remaining == []
    # The host can still fork.
    assert subprocess.run(["true"], check=False).returncode == 0


#: Grows by 4 MiB of touched memory at a time, printing the total after each step.
MEMORY_BOMB = """
b = []
while True:
    b.append(b"x" * (4 << 20))
    print(len(b) * 4, flush=True)
"""


async def test_memory_bomb_is_oom_killed_at_the_requested_size(executor: DockerExecutor) -> None:
    """The OOM killer stops the bomb just under the 64 MiB asked for (the interpreter
    itself takes some), and the report names the limit the container had."""
    result = await executor.run(make_spec(
        ["python3", "-c", MEMORY_BOMB], memory_bytes=64 * MiB, timeout_s=60,
    ))
    assert not result.timed_out
    assert (result.exit_code, result.signal) == (137, 9), result
    assert result.error == "out of memory: killed by the cgroup memory limit of 64 MiB", result
    reached = int(result.stdout.split()[-1])
    assert 32 <= reached < 64, f"the bomb held {reached} MiB under a 64 MiB limit"


async def test_oom_report_names_the_limit_in_force_not_the_request(
    executor: DockerExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test-only override: the container gets 96 MiB while the request says 64 MiB;
    the report must name what fired (read from the container), not the request."""
    create_body = executor._create_body

    def bigger(spec: Any, image: str, secrets: Any = None) -> dict[str, Any]:
        body = create_body(spec, image, secrets)
        body["HostConfig"].update(Memory=96 * MiB, MemorySwap=96 * MiB)
        return body

    monkeypatch.setattr(executor, "_create_body", bigger)
    result = await executor.run(make_spec(
        ["python3", "-c", MEMORY_BOMB], memory_bytes=64 * MiB, timeout_s=60,
    ))
    assert result.signal == 9, result
    assert result.error == "out of memory: killed by the cgroup memory limit of 96 MiB", result
    assert int(result.stdout.split()[-1]) >= 64  # it really grew past the request


CGROUP_MEMORY = (
    "for f in memory.limit_in_bytes memory.memsw.limit_in_bytes memory.max memory.swap.max; "
    "do [ -e /sys/fs/cgroup/memory/$f ] && echo $f $(cat /sys/fs/cgroup/memory/$f); "
    "[ -e /sys/fs/cgroup/$f ] && echo $f $(cat /sys/fs/cgroup/$f); done; true"
)


async def test_memory_limit_is_exactly_the_one_asked_for(
    executor: DockerExecutor, docker_daemon: Daemon
) -> None:
    """96 MiB asked: the daemon holds 96 MiB of memory and no swap beyond it, and
    the container's own memory cgroup says the same."""
    config, result = await while_running(
        executor, docker_daemon, CGROUP_MEMORY, lambda c: c.attrs["HostConfig"],
        memory_bytes=96 * MiB,
    )
    assert (config["Memory"], config["MemorySwap"]) == (96 * MiB, 96 * MiB), config
    seen = dict(line.split() for line in result.stdout.decode().splitlines())
    limit = seen.get("memory.limit_in_bytes", seen.get("memory.max"))
    assert limit == str(96 * MiB), seen
    if "memory.memsw.limit_in_bytes" in seen:  # v1 with swap accounting
        assert seen["memory.memsw.limit_in_bytes"] == str(96 * MiB), seen
    if "memory.swap.max" in seen:  # v2
        assert seen["memory.swap.max"] == "0", seen


async def test_cpu_time_limit(executor: DockerExecutor) -> None:
    result = await executor.run(make_spec(
        ["python3", "-c", "while True: pass"], cpu_seconds=1, timeout_s=30,
    ))
    assert not result.timed_out
    assert result.signal in (9, 24), result  # SIGXCPU at the soft limit, SIGKILL at hard


async def test_file_size_limit(executor: DockerExecutor) -> None:
    result = await executor.run(make_spec(
        ["sh", "-c", "head -c 4000000 /dev/zero > /tmp/big; echo status $?; wc -c < /tmp/big"],
        file_size_bytes=1 * MiB, timeout_s=30,
    ))
    assert int(result.stdout.split()[-1]) <= MiB, result



SOCKET_FAMILY_PROBE = """
import errno, socket
# AF_UNIX, AF_INET, AF_INET6, AF_NETLINK; then AF_VSOCK, AF_PACKET, AF_ALG, 0.
for family, kind in ((1, 1), (2, 2), (10, 2), (16, 3), (40, 1), (17, 3), (38, 5), (0, 1)):
    try:
        socket.socket(family, kind, 0).close()
        print(family, "ok")
    except OSError as e:
        print(family, errno.errorcode.get(e.errno, e.errno))
"""


async def test_vsock_and_other_socket_families_are_refused(executor: DockerExecutor) -> None:
    # AF_VSOCK is not confined by --network none; Docker's stock profile lets it open.
    result = await executor.run(make_spec(["python3", "-c", SOCKET_FAMILY_PROBE]))
    lines = result.stdout.decode().splitlines()
    assert lines[:4] == ["1 ok", "2 ok", "10 ok", "16 ok"], result
    assert lines[4:] == ["40 EAFNOSUPPORT", "17 EAFNOSUPPORT", "38 EAFNOSUPPORT",
                         "0 EAFNOSUPPORT"], result


@pytest.mark.parametrize("which", ["docker-default+families", "generated"])
async def test_both_default_profiles_refuse_vsock(
    docker_image: str, which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faas.executors.docker import seccomp_profile
    if which == "generated":
        monkeypatch.setattr(seccomp_profile, "DEFAULT_PROFILE_PATHS", ())
    elif seccomp_profile.docker_default_profile() is None:
        pytest.skip(f"no copy of Docker's default profile: {seccomp_profile.DEFAULT_PROFILE_PATHS}")
    ex = DockerExecutor(default_image=docker_image)
    try:
        assert ex.seccomp_source == which
        result = await ex.run(make_spec(["python3", "-c", SOCKET_FAMILY_PROBE + SYSCALL_PROBE]))
    finally:
        await ex.aclose()
    out = result.stdout.decode()
    assert "40 EAFNOSUPPORT" in out and "2 ok" in out, result
    assert out.count("denied") == 6 and "ALLOWED" not in out, out


async def test_proc_cmdline_shows_nothing_of_the_host(executor: DockerExecutor) -> None:
    host = Path("/proc/cmdline").read_text().split()
    result = await executor.run(make_spec(
        ["sh", "-c", "cat /proc/cmdline; echo; cat /proc/keys /proc/kcore 2>&1 | head -c 100"],
    ))
    assert result.exit_code == 0, result
    seen = result.stdout.decode().split()
    assert not set(host) & set(seen), (host, seen)


def _host_config(container: Container) -> dict[str, Any]:
    return dict(container.attrs["HostConfig"]) | {"User": container.attrs["Config"]["User"]}


async def test_running_container_is_configured_as_documented(
    executor: DockerExecutor, docker_daemon: Daemon
) -> None:
    """What the daemon really gave a running container, field by field."""
    config, result = await while_running(
        executor, docker_daemon, "true", _host_config, memory_bytes=80 * MiB, pids=40,
    )
    assert result.exit_code == 0, result
    assert config["User"] == "65534:65534"
    assert config["Privileged"] is False
    assert config["NetworkMode"] == "none"
    assert config["ReadonlyRootfs"] is True
    assert config["IpcMode"] == "private"
    assert config["LogConfig"]["Type"] == "none"
    assert config["CapDrop"] == ["ALL"] and not config["CapAdd"], config
    assert (config["Memory"], config["MemorySwap"], config["PidsLimit"]) == (
        80 * MiB, 80 * MiB, 40)
    assert not config["Binds"] and not config.get("Mounts") and not config["Devices"], config
    opts = config["SecurityOpt"]
    assert "no-new-privileges" in opts, opts
    seccomp = [o for o in opts if o.startswith("seccomp=")]
    assert len(seccomp) == 1 and json.loads(seccomp[0].removeprefix("seccomp=")), opts
    assert "unconfined" not in seccomp[0], opts


async def test_ipc_namespace_cannot_be_joined(
    executor: DockerExecutor, docker_daemon: Daemon, docker_image: str
) -> None:
    """IPC mode private: no other container can join the invocation's IPC namespace
    (shareable would allow `--ipc container:<it>`) and no /dev/shm of it is mounted
    on the host."""
    def try_to_join(container: Container) -> tuple[str, int]:
        joiner = f"faas-test-ipc-join-{secrets.token_hex(4)}"
        try:
            docker_daemon.run(
                docker_image, ["true"], name=joiner, IpcMode=f"container:{container.id}",
                NetworkMode="none", LogConfig={"Type": "none", "Config": {}},
            )
            outcome = "JOINED"
        except DaemonError as exc:
            outcome = f"refused: {exc.explanation}"
        finally:
            docker_daemon.remove(joiner, missing_ok=True)
        host_mounts = Path("/proc/self/mountinfo").read_text().count(str(container.id))
        return outcome, host_mounts

    (outcome, host_mounts), result = await while_running(
        executor, docker_daemon, "true", try_to_join)
    assert result.exit_code == 0, result
    assert outcome.startswith("refused") and "non-shareable" in outcome, outcome
    assert host_mounts == 0, "the container's /dev/shm is mounted on the host"


async def test_output_never_lands_on_the_host_disk(
    executor: DockerExecutor, docker_daemon: Daemon
) -> None:
    """Log driver none: no log file exists for the container and its output is in
    no file of the daemon's container folder."""
    marker = secrets.token_hex(16)
    root = Path(docker_daemon.info()["DockerRootDir"])

    def look(container: Container) -> tuple[str, str, list[str]]:
        folder = root / "containers" / str(container.id)
        hits = [str(f) for f in folder.rglob("*")
                if f.is_file() and marker.encode() in f.read_bytes()]
        config = container.attrs
        return config["HostConfig"]["LogConfig"]["Type"], config["LogPath"], hits

    # Printed in two halves: the command line (kept in config.v2.json) never holds it.
    half = len(marker) // 2
    (driver, log_path, hits), result = await while_running(
        executor, docker_daemon, f"m={marker[:half]}; echo ${{m}}{marker[half:]}; "
        f"echo ${{m}}{marker[half:]} >&2", look)
    assert result.stdout == f"{marker}\n".encode(), result  # the caller still gets it
    assert hits == [], hits
    assert driver == "none" and not log_path, (driver, log_path)


async def test_server_environment_never_reaches_the_container(
    executor: DockerExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = secrets.token_hex(16)
    monkeypatch.setenv("FAAS_SERVER_ONLY_SECRET", secret)
    result = await executor.run(make_spec(
        ["sh", "-c", "cat /proc/1/environ | tr '\\0' '\\n'; echo ---; env"],
        env={"ASKED": "yes"},
    ))
    out = result.stdout.decode()
    assert secret not in out and "FAAS_SERVER_ONLY_SECRET" not in out
    names = {line.split("=", 1)[0] for line in out.split("---\n", 1)[1].splitlines()}
    # Docker's own PATH/HOSTNAME/HOME, the shell's PWD (and SHLVL), and the request's.
    assert names <= {"PATH", "HOSTNAME", "HOME", "PWD", "SHLVL", "ASKED"}, names
    assert "ASKED" in names


FOREIGN_ABI_PROBE = """
import ctypes, mmap, sys
if sys.argv[1] == "x32":  # getpid with the x32 bit: one more ABI to filter
    print("x32 returned", ctypes.CDLL(None).syscall(ctypes.c_long(0x40000000 | 39)))
else:  # mov eax, 20 (i386 getpid); int 0x80; ret
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(bytes.fromhex("b814000000cd80c3"))
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    print("int80 returned", ctypes.CFUNCTYPE(ctypes.c_int)(address)())
"""


async def test_foreign_abis_are_killed_under_the_generated_profile(
    docker_image: str, docker_daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generated profile lists only the x86-64 ABI: an i386 `int 0x80` or an
    x32 system call kills the process with SIGSYS (159 from the shell), as in the
    namespace sandbox. (The host runs i386 code: the same probe returns a pid there.)"""
    from faas.executors.docker import seccomp_profile

    monkeypatch.setattr(seccomp_profile, "DEFAULT_PROFILE_PATHS", ())
    ex = DockerExecutor(default_image=docker_image)
    try:
        assert ex.seccomp_source == "generated"
        result = await ex.run(make_spec(["sh", "-c", (
            f"python3 -c '{FOREIGN_ABI_PROBE}' x32; echo x32 status $?; "
            f"python3 -c '{FOREIGN_ABI_PROBE}' int80; echo int80 status $?"
        )]))
    finally:
        await ex.aclose()
    lines = result.stdout.decode().splitlines()
    assert lines == ["x32 status 159", "int80 status 159"], (lines, result.stderr)
