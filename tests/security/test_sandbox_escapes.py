"""Hostile code in the namespace sandbox: each attack is really attempted.

Each test asserts containment, a clean result, that the gateway stays healthy
during the attack, and (autouse fixture) that nothing is left behind.
"""

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import faas
from helpers import Server, assert_no_leaks, assert_nothing_left_by

pytestmark = pytest.mark.sandbox


def host_mounts() -> list[str]:
    """The host's mount table, less the Docker daemon's own (the docker tier checks those)."""
    mounts = [" ".join(line.split()[3:5])
              for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [m for m in mounts if "/var/lib/docker/" not in m and "/run/docker/" not in m]


def host_tmp() -> set[str]:
    return {p.name for p in Path("/tmp").iterdir()}


@pytest.fixture(autouse=True)
def _leak_check(server: Server) -> Iterator[None]:
    mounts, tmp = host_mounts(), host_tmp()
    yield
    # Every process the server started (whatever its uid or name) and its cgroups, then
    # the host-wide view: sandbox uids, bubblewrap, anything in a faas/ cgroup.
    assert_nothing_left_by(server.proc.pid)
    assert_no_leaks()
    assert host_mounts() == mounts
    # (faas-vm-* belong to the microVM tier, which checks its own)
    assert not {n for n in host_tmp() - tmp
                if n.startswith(("faas", "bwrap")) and not n.startswith("faas-vm-")}
    with server.client() as c:
        assert c.get("/healthz").status_code == 200


class HealthProbe:
    """Polls /healthz from another thread while an attack runs."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.codes: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=10) as c:
            while not self._stop.is_set():
                try:
                    self.codes.append(c.get("/healthz").status_code)
                except httpx.HTTPError:
                    self.codes.append(0)
                time.sleep(0.05)

    def __enter__(self) -> "HealthProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        assert self.codes and set(self.codes) == {200}, self.codes


def py(server: Server, code: str, **fields: Any) -> tuple[int, dict[str, Any]]:
    r = server.invoke(["python3", "-c", code], **fields)
    return r.status_code, r.json()


def test_host_files_and_secrets_are_out_of_reach(server: Server) -> None:
    source = Path(faas.__file__).resolve()
    code = f"""
import os, glob
for p in ["/etc/shadow", "/root", "/home", "/work", "/var/run/docker.sock", {str(source)!r}]:
    print(p, os.path.exists(p))
secrets = [f for f in glob.glob("/proc/*/environ")
           if b"gateway-secret-value" in open(f, "rb").read()]
print("leaked", secrets)
print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
"""
    status, body = py(server, code)
    assert status == 200, body
    lines = body["stdout"].splitlines()
    assert all(line.endswith(" False") for line in lines[:6]), lines
    assert lines[6] == "leaked []"
    pids = eval(lines[7].split(" ", 1)[1])  # noqa: S307 - our own output
    assert max(pids) < 10  # a pid namespace of its own: the host's processes are invisible


def test_identity_capabilities_and_filters(server: Server) -> None:
    code = """
import os
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
print(os.getuid(), status["CapEff"].strip(), status["NoNewPrivs"].strip(),
      status["Seccomp"].strip())
"""
    _, body = py(server, code)
    assert body["stdout"].split() == ["1000", "0000000000000000", "1", "2"]


def test_no_network_not_even_the_gateway(server: Server) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    other_port = listener.getsockname()[1]
    code = f"""
import os, socket
for port in ({server.port}, {other_port}):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2)
        print(port, "connected")
    except OSError as e:
        print(port, "blocked", e.errno)
try:
    socket.getaddrinfo("example.com", 80)
    print("dns resolved")
except OSError:
    print("dns blocked")
print(sorted(name for _, name in socket.if_nameindex()))
"""
    try:
        _, body = py(server, code)
    finally:
        listener.close()
    out = body["stdout"]
    assert "connected" not in out and out.count("blocked") == 3, out
    assert out.splitlines()[-1] == "['lo']"


def test_fork_bomb_is_contained(server: Server) -> None:
    code = """
import os, time
n = 0
while True:
    try:
        if os.fork() == 0:
            time.sleep(30)
        n += 1
    except OSError:
        print("fork refused after", n, flush=True)
        break
time.sleep(1)
"""
    with HealthProbe(server):
        status, body = py(server, code, timeout_s=10)
    assert status == 200, body
    assert "fork refused after" in body["stdout"]
    assert int(body["stdout"].split()[-1]) < 130


def test_memory_bomb_is_killed_at_the_limit(server: Server) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))"
    with HealthProbe(server):
        status, body = py(server, code, memory_mb=64, timeout_s=20)
    assert status == 200
    # The cgroup fires (RLIMIT_AS sits at 4x the request), and the message names the
    # limit read back from the group. test_sandbox_layers proves each layer alone.
    assert body["signal"] == 9 and body["exit_code"] == 137, body
    assert body["error"] == "out of memory: killed by the cgroup memory limit of 64 MiB", body
    assert "MemoryError" not in body["stderr"], body


def test_filling_tmp_with_10_gb_stops_at_the_tmpfs_cap(server: Server) -> None:
    with HealthProbe(server):
        r = server.invoke(["sh", "-c", "head -c 10G /dev/zero > /tmp/fill; echo rc=$?; "
                                       "du -sm /tmp/fill"], timeout_s=30)
    body = r.json()
    assert r.status_code == 200
    size_mb = int(body["stdout"].split()[-2])
    assert size_mb <= 64
    assert "rc=0" not in body["stdout"]


def test_stdout_flood_of_100_mb_is_capped(server: Server) -> None:
    with HealthProbe(server):
        r = server.invoke(["head", "-c", "100000000", "/dev/zero"], timeout_s=60)
    body = r.json()
    assert r.status_code == 200 and body["exit_code"] == 0
    assert body["truncated"]["stdout"] and len(body["stdout"]) == 1024 * 1024


def test_sigterm_ignoring_double_forked_children_die_at_the_deadline(server: Server) -> None:
    script = ("trap '' TERM; (setsid sh -c 'trap \"\" TERM; sleep 1000' &); "
              "(sh -c 'trap \"\" TERM; sleep 1000' &); echo started; sleep 1000")
    r = server.invoke(["sh", "-c", script], timeout_s=1)
    assert r.status_code == 504 and r.json()["stdout"] == "started\n"


def test_daemon_left_behind_by_a_finished_command_is_killed(server: Server) -> None:
    r = server.invoke(["sh", "-c", "(setsid sleep 1000 > /dev/null 2>&1 &); echo bye"])
    assert r.status_code == 200 and r.json()["stdout"] == "bye\n"


def test_ptrace_of_a_sibling_is_refused(server: Server) -> None:
    code = """
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
child = os.fork()
if child == 0:
    time.sleep(10); os._exit(0)
rc = libc.ptrace(16, child, 0, 0)  # PTRACE_ATTACH
print(rc, ctypes.get_errno())
os.kill(child, 9)
"""
    _, body = py(server, code)
    assert body["stdout"].split() == ["-1", "1"]  # EPERM


@pytest.mark.parametrize("name, call", [
    ("mount", "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)"),
    ("umount", "libc.umount2(b'/proc', 2)"),
    ("unshare-user", "libc.unshare(0x10000000)"),
    ("unshare-net", "libc.unshare(0x40000000)"),
    ("clone-newns", "libc.syscall(56, 0x00020000 | 17, 0, 0, 0, 0)"),
    ("keyctl", "libc.syscall(250, 0, 0, 0, 0, 0)"),
    ("add_key", "libc.syscall(248, b'user', b'x', b'y', 1, -2)"),
    ("bpf", "libc.syscall(321, 0, 0, 0)"),
    ("perf_event_open", "libc.syscall(298, 0, 0, -1, -1, 0)"),
    ("kexec_load", "libc.syscall(246, 0, 0, 0, 0)"),
    ("init_module", "libc.syscall(175, 0, 0, b'')"),
    ("setns", "libc.syscall(308, 0, 0)"),
])
def test_dangerous_syscalls_fail_with_eperm(server: Server, name: str, call: str) -> None:
    code = f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
rc = {call}
print(rc, ctypes.get_errno())
"""
    _, body = py(server, code)
    assert body["stdout"].split() == ["-1", "1"], (name, body)


def test_root_is_read_only_and_tmp_is_private(server: Server) -> None:
    marker = f"/tmp/faas-marker-{time.time_ns()}"
    r = server.invoke(["sh", "-c", f"touch /usr/x /etc/x /x 2>&1; echo secret > {marker}; "
                                   f"cat {marker}"])
    out = r.json()["stdout"]
    assert out.count("Read-only file system") == 3 and out.endswith("secret\n")
    assert not Path(marker).exists()
    r = server.invoke(["sh", "-c", f"cat {marker}"])
    assert r.json()["exit_code"] != 0  # the next sandbox's /tmp is fresh


def test_request_env_acts_only_on_the_command(server: Server) -> None:
    """LD_PRELOAD & co. must not reach the root launcher or bubblewrap; values must not
    appear on any host command line (world-readable through /proc)."""
    secret = f"faas-secret-{time.time_ns()}"
    r = server.invoke(["sh", "-c", "echo $MY_SECRET"],
                      env_vars=["LD_PRELOAD=/nonexistent-faas-preload.so", f"MY_SECRET={secret}"])
    body = r.json()
    assert body["stdout"] == f"{secret}\n"
    # ld.so complains once per process that tries the preload: only the command's shell.
    assert body["stderr"].count("cannot be preloaded") == 1, body["stderr"]

    seen: list[str] = []
    t = threading.Thread(target=lambda: server.invoke(["sleep", "1"],
                                                      env_vars=[f"MY_SECRET={secret}"]))
    t.start()
    until = time.monotonic() + 0.8
    while time.monotonic() < until:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if secret.encode() in cmdline.read_bytes():
                    seen.append(str(cmdline))
            except OSError:
                pass
    t.join()
    assert not seen


SOCKET_FAMILY_PROBE = """
import errno, socket
# AF_UNIX, AF_INET, AF_INET6, AF_NETLINK; then AF_VSOCK, AF_PACKET, AF_BLUETOOTH, AF_ALG, 0.
for family, kind in ((1, 1), (2, 2), (10, 2), (16, 3), (40, 1), (17, 3), (31, 1), (38, 5), (0, 1)):
    try:
        socket.socket(family, kind, 0).close()
        print(family, "ok")
    except OSError as e:
        print(family, errno.errorcode.get(e.errno, e.errno))
try:
    socket.socketpair(socket.AF_UNIX).__class__
    print("socketpair-unix ok")
except OSError as e:
    print("socketpair-unix", errno.errorcode.get(e.errno, e.errno))
"""


def test_socket_families_beyond_unix_inet_netlink_are_refused(server: Server) -> None:
    # AF_VSOCK is not confined by the network namespace: it must not even open.
    _, body = py(server, SOCKET_FAMILY_PROBE)
    lines = body["stdout"].splitlines()
    assert lines[:4] == ["1 ok", "2 ok", "10 ok", "16 ok"], body
    assert lines[4:9] == ["40 EAFNOSUPPORT", "17 EAFNOSUPPORT", "31 EAFNOSUPPORT",
                          "38 EAFNOSUPPORT", "0 EAFNOSUPPORT"], body
    assert lines[9] == "socketpair-unix ok", body
