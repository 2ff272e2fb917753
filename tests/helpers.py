"""Shared test helpers: a real gateway process on a free port, and leak checks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

UID_BASE = 200000
UID_RANGE = 4096
CGROUP_DIRS = [Path("/sys/fs/cgroup/memory/faas"), Path("/sys/fs/cgroup/pids/faas"),
               Path("/sys/fs/cgroup/faas")]


#: tier name -> "ran" or "SKIPPED: reason"; printed at the end of the run.
TIERS: dict[str, str] = {}


def record_tier(name: str, state: str) -> None:
    """Record whether an isolation tier's tests ran here (shown in the summary)."""
    TIERS[name] = state


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def invoke(self, command: list[str], function_id: str = "t", timeout: float = 60.0,
               **fields: Any) -> httpx.Response:
        with self.client(timeout) as c:
            return c.post(f"/functions/{function_id}/invoke", json={"command": command, **fields})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextlib.contextmanager
def running_server(tmp_path: Path, env: Mapping[str, str] | None = None,
                   data_dir: Path | None = None) -> Iterator[Server]:
    """A real ``faas serve``, stopped (SIGTERM) at the end; on a fresh data folder, or on
    ``data_dir`` (the caller's, kept: e.g. to start another server on the same store)."""
    if data_dir is not None:
        yield from _running_server(tmp_path, {"FAAS_DATA_DIR": str(data_dir), **(env or {})})
        return
    with open_data_dir() as data:
        yield from _running_server(tmp_path, {"FAAS_DATA_DIR": str(data), **(env or {})})


@contextlib.contextmanager
def open_data_dir() -> Iterator[Path]:
    """A fresh data folder every host uid may traverse to (0711 under /tmp), removed after.

    pytest's own temporary folders are 0700, and the sandbox tier binds a
    deployed function's code as an unprivileged host uid, which must be able
    to pass through every folder above it (as it must on a real host).
    """
    base = Path(tempfile.mkdtemp(prefix="faas-test-data-", dir="/tmp"))
    base.chmod(0o711)
    try:
        yield base / "data"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _running_server(tmp_path: Path, env: Mapping[str, str]) -> Iterator[Server]:
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    full_env = {**os.environ, "FAAS_GATEWAY_PORT": str(port), "FAAS_LOG": "info", **env}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "faas.cli", "serve"], env=full_env,
                                stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", port, proc, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{server.log()}")
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not start:\n{server.log()}")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


def faas_admin(data_dir: Path, *argv: str, env: Mapping[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    """``faas admin ARGV`` on the store in ``data_dir`` (a subprocess, as an operator runs it)."""
    full = {**os.environ, **(env or {}), "FAAS_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "faas.cli", "admin", *argv], env=full,
                          capture_output=True, text=True, timeout=60)


def create_tenant(data_dir: Path, name: str, env: Mapping[str, str] | None = None) -> None:
    done = faas_admin(data_dir, "create-tenant", name, env=env)
    assert done.returncode == 0, done.stderr


def create_key(data_dir: Path, tenant: str = "default", role: str = "admin",
               env: Mapping[str, str] | None = None) -> str:
    """A new key made by ``faas admin create-key --out`` (never on a command line)."""
    out = Path(tempfile.mkdtemp(prefix="faas-test-key-")) / "key"
    try:
        done = faas_admin(data_dir, "create-key", "--tenant", tenant, "--role", role,
                          "--out", str(out), env=env)
        assert done.returncode == 0, done.stderr
        return out.read_text().strip()
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


@dataclass(frozen=True)
class ProcInfo:
    """One host process, as the leak checks see it."""

    pid: int
    ppid: int
    uid: int
    name: str
    cgroups: str
    cmdline: str

    def __str__(self) -> str:
        return f"{self.pid} ppid={self.ppid} uid={self.uid} {self.cmdline[:120]}"


def process_table() -> dict[int, ProcInfo]:
    """Every process on the host (those that exit while read are skipped)."""
    table: dict[int, ProcInfo] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroups = (entry / "cgroup").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        table[int(entry.name)] = ProcInfo(
            pid=int(entry.name), ppid=int(fields["PPid"].split()[0]),
            uid=int(fields["Uid"].split()[0]), name=fields["Name"].strip(), cgroups=cgroups,
            cmdline=cmdline)
    return table


def descendants(root: int, table: Mapping[int, ProcInfo] | None = None) -> list[ProcInfo]:
    """Every process below ``root`` (children, their children, ...), not ``root`` itself."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(table[pid])
        todo += children.get(pid, [])
    return found


def in_faas_cgroup(info: ProcInfo) -> bool:
    """Whether the process sits in a per-invocation group (any hierarchy, under ``faas/``)."""
    return any(line.split(":", 2)[-1].startswith("/faas/") for line in info.cgroups.splitlines())


def is_sandbox_process(info: ProcInfo) -> bool:
    """A sandbox uid, bubblewrap, the spawn helper, or anything in a per-invocation cgroup."""
    return (UID_BASE <= info.uid < UID_BASE + UID_RANGE or info.name in ("bwrap", "faas-spawn")
            or in_faas_cgroup(info))


def reap_adopted_sandbox_orphans() -> int:
    """Reap exited sandbox processes that this test process adopted; return how many.

    Tests that drive a ``SandboxExecutor`` in-process make this process a child
    subreaper (as the server is), so the sandboxes of a server a test killed
    with SIGKILL are re-parented here once they die. They are the test's
    zombies, not the server's leak. Only exited children of sandbox uids are
    reaped, never a ``Popen`` the tests still hold (servers run as root).
    """
    me, reaped = os.getpid(), 0
    for info in process_table().values():
        if info.ppid == me and is_sandbox_process(info) and info.uid != 0:
            with contextlib.suppress(ChildProcessError, OSError):
                if os.waitid(os.P_PID, info.pid, os.WEXITED | os.WNOHANG) is not None:
                    reaped += 1
    return reaped


def sandbox_processes() -> list[str]:
    """Processes of sandbox uids, bubblewrap itself, or in a ``faas/`` cgroup: none at rest.

    The uid range alone misses a sandbox whose command kept host uid 0, and the
    name misses every command; the cgroup catches whatever was confined.
    """
    reap_adopted_sandbox_orphans()
    return [str(info) for info in process_table().values() if is_sandbox_process(info)]


def reap_adopted_zombies() -> list[int]:
    """Reap the exited children this test process was handed as a child subreaper.

    The in-process sandbox executor makes this process a subreaper, so the
    kernel hands it the orphans of everything it started: the postmaster of a
    stopped PostgreSQL cluster (``pg_ctl`` exited long before), the VMMs of a
    ``faas serve`` subprocess that exited. Nothing else waits for those, so
    their zombies would stay until the session ends. Our own code's reaping
    is proven where it is made (``tests/unit/test_proc.py``).
    """
    reaped = []
    me = os.getpid()
    for info in process_table().values():
        if info.ppid != me:
            continue
        try:
            state = Path(f"/proc/{info.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state == "Z":
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(info.pid, os.WNOHANG)
                reaped.append(info.pid)
    return reaped


def stray_descendants(root: int, ignore: Collection[int] = ()) -> list[str]:
    """Every process left below ``root`` (a server, or this test process), less the
    subtrees rooted at ``ignore`` (e.g. a test's own long-lived servers) and the
    adopted zombies this test process reaps first."""
    if root == os.getpid():
        reap_adopted_zombies()
    table = process_table()
    skip = set(ignore)
    for pid in ignore:
        skip.update(info.pid for info in descendants(pid, table))
    return [str(info) for info in descendants(root, table) if info.pid not in skip]


def cgroup_dirs() -> list[Path]:
    """Every per-invocation group under our roots (pooled empty ones included)."""
    found: list[Path] = []
    for parent in CGROUP_DIRS:
        if parent.is_dir():
            found += [c for c in parent.iterdir() if c.is_dir()]
    return found


def leftover_cgroups() -> list[str]:
    """Groups that still hold a process: a running server pools empty ones."""
    busy = []
    for group in cgroup_dirs():
        try:
            if (group / "cgroup.procs").read_text().strip():
                busy.append(str(group))
        except OSError:
            continue
    return busy


def assert_no_leaks(settle_s: float = 5.0) -> None:
    """No sandbox process or cgroup may outlive its invocation (waits briefly for teardown)."""
    deadline = time.monotonic() + settle_s
    while True:
        procs, groups = sandbox_processes(), leftover_cgroups()
        if not procs and not groups:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"leaked processes: {procs}\nleaked cgroups: {groups}")
        time.sleep(0.05)


def busy_cgroups_of(server_pid: int) -> list[str]:
    """Groups made by the server (or executor) of that pid that still hold a process."""
    prefix = f"g{server_pid}x"
    return [g for g in leftover_cgroups() if Path(g).name.startswith(prefix)]


def assert_nothing_left_by(root: int, settle_s: float = 5.0,
                          ignore: Collection[int] = ()) -> None:
    """The per-call check for the server (or in-process executor) of pid ``root``: no
    process left below it (every process it started, whatever its uid, name or cgroup:
    it is a child subreaper, so orphans come back to it) and none left in its cgroups.
    Unlike ``assert_no_leaks`` it looks at nothing of other servers on the host, so it
    holds while other test runs share the machine."""
    deadline = time.monotonic() + settle_s
    while True:
        strays, groups = stray_descendants(root, ignore), busy_cgroups_of(root)
        if not strays and not groups:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left below pid {root}: {strays}\nbusy cgroups: {groups}")
        time.sleep(0.05)


# -- hostile-caller tests (tests/security/test_hostile_callers.py) -------------

#: Text that must never appear in a body the gateway sends a caller.
HOST_DETAILS = ("/sys/fs/cgroup", "/tmp/", "/work", "/usr/", "Traceback")


def assert_no_host_details(text: str) -> None:
    """An error body (or /readyz) names no host path and carries no traceback."""
    found = [d for d in HOST_DETAILS if d in text]
    assert not found, f"host details {found} in: {text[:2000]}"


def assert_still_serving(server: Server, settle_s: float = 5.0, key: str | None = None) -> None:
    """After an attack: the process lives, /healthz answers, a normal call (with ``key``, if
    the server requires one) works, no leaks."""
    assert server.proc.poll() is None, f"server died ({server.proc.returncode}):\n" + (
        server.log()[-4000:])
    with server.client(timeout=10) as c:
        assert c.get("/healthz").status_code == 200
        r = c.post("/functions/after-attack/invoke", json={"command": ["echo", "ok"]},
                   headers={"Authorization": f"Bearer {key}"} if key else None)
    assert r.status_code == 200, r.text[:2000]
    assert r.json()["stdout"] == "ok\n", r.text[:2000]
    assert_no_leaks(settle_s)


def raise_own_open_file_limit(wanted: int) -> int:
    """Raise this (test) process's RLIMIT_NOFILE towards ``wanted``; return the soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        new_hard = hard if hard == resource.RLIM_INFINITY else max(hard, wanted)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, new_hard))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM of ``pid`` to its current RSS (needs the right to write clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text, e.g. ``name{reason="evicted"}``; 0 if absent."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == wanted:
            return float(value)
    return 0.0
