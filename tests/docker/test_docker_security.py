"""Hostile commands against the Docker tier: each attack is tried for real."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker.errors  # binds `docker` too; keeps isort from mistaking tests/docker
import pytest
from docker_support import make_spec

from faas.executors.docker import REQUEST_LABEL, DockerExecutor

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


async def test_host_files_are_unreachable(executor: DockerExecutor, tmp_path: Path) -> None:
    token = secrets.token_hex(16)
    secret = tmp_path / "host-secret.txt"
    secret.write_text(token)
    shadow = Path("/etc/shadow").read_text() if Path("/etc/shadow").exists() else ""
    root_hash = next((line.split(":")[1] for line in shadow.splitlines()
                      if line.startswith("root:")), "")
    script = (
        f"cat {secret} /tmp/{secret.name} /host/etc/shadow; "
        "cat /etc/shadow; "
        "ls /proc/1/root/ >/dev/null; cat /proc/1/root/etc/shadow; "
        f"grep -rs {token} /etc /opt /root /home /var /srv /mnt /tmp | head -1; "
        "exit 0"
    )
    result = await executor.run(make_spec(["sh", "-c", script], timeout_s=60))
    combined = result.stdout + result.stderr
    assert token.encode() not in combined
    if len(root_hash) > 4:
        assert root_hash.encode() not in combined
    assert b"Permission denied" in result.stderr  # the image's own shadow, as nobody


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
    script = (
        "touch /etc/evil 2>&1 || echo root-read-only; "
        "touch /opt/evil 2>&1 || echo opt-read-only; "
        "echo ok > /tmp/ok && cat /tmp/ok; "
        "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1; "
        "du -k /tmp/fill"
    )
    result = await executor.run(make_spec(["sh", "-c", script], tmp_bytes=8 * MiB))
    out = result.stdout.decode()
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


async def test_classic_fork_bomb_is_killed_at_the_deadline(
    executor: DockerExecutor, docker_daemon: docker.DockerClient
) -> None:
    started = time.monotonic()
    result = await executor.run(make_spec(
        ["sh", "-c", "b() { b | b & }; b; sleep 30"], pids=64, timeout_s=4,
        request_id="fork-bomb",
    ))
    assert time.monotonic() - started < 20
    assert result.timed_out or result.exit_code is not None
    remaining = docker_daemon.containers.list(
        all=True, filters={"label": f"{REQUEST_LABEL}=fork-bomb"}
    )
    assert remaining == []
    # The host can still fork.
    assert subprocess.run(["true"], check=False).returncode == 0


async def test_memory_bomb_is_oom_killed_and_reported(executor: DockerExecutor) -> None:
    bomb = "b = []\nwhile True:\n    b.append(b'x' * (8 << 20))\n"
    result = await executor.run(make_spec(
        ["python3", "-c", bomb], memory_bytes=64 * MiB, timeout_s=60,
    ))
    assert not result.timed_out
    assert (result.exit_code, result.signal) == (137, 9), result
    assert result.error is not None and "out of memory" in result.error


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
    from faas.executors import docker_seccomp
    if which == "generated":
        monkeypatch.setattr(docker_seccomp, "DEFAULT_PROFILE_PATHS", ())
    elif docker_seccomp.docker_default_profile() is None:
        pytest.skip(f"no copy of Docker's default profile: {docker_seccomp.DEFAULT_PROFILE_PATHS}")
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
