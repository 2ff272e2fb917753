"""Shared test helpers: a real gateway process on a free port, and leak checks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
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
def running_server(tmp_path: Path, env: Mapping[str, str] | None = None) -> Iterator[Server]:
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    full_env = {**os.environ, "FAAS_GATEWAY_PORT": str(port), "FAAS_LOG": "info",
                **(env or {})}
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


def sandbox_processes() -> list[str]:
    """Processes owned by sandbox uids, or bubblewrap itself: there must be none at rest."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        name = next(line for line in status.splitlines() if line.startswith("Name:")).split()[1]
        if UID_BASE <= uid < UID_BASE + UID_RANGE or name == "bwrap":
            found.append(f"{entry.name} uid={uid} {cmdline[:120]}")
    return found


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


# -- hostile-caller tests (tests/security/test_hostile_callers.py) -------------

#: Text that must never appear in a body the gateway sends a caller.
HOST_DETAILS = ("/sys/fs/cgroup", "/tmp/", "/work", "/usr/", "Traceback")


def assert_no_host_details(text: str) -> None:
    """An error body (or /readyz) names no host path and carries no traceback."""
    found = [d for d in HOST_DETAILS if d in text]
    assert not found, f"host details {found} in: {text[:2000]}"


def assert_still_serving(server: Server, settle_s: float = 5.0) -> None:
    """After an attack: the process lives, /healthz answers, a normal call works, no leaks."""
    assert server.proc.poll() is None, f"server died ({server.proc.returncode}):\n" + (
        server.log()[-4000:])
    with server.client(timeout=10) as c:
        assert c.get("/healthz").status_code == 200
        r = c.post("/functions/after-attack/invoke", json={"command": ["echo", "ok"]})
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
