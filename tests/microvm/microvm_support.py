"""Helpers shared by the microVM tests: specs, and the VMM leak check."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from faas.models import ExecutionSpec, FunctionBundle, Limits


def make_spec(command: list[str], *, payload: bytes = b"", env: dict[str, str] | None = None,
              timeout_s: float = 60.0, bundle: FunctionBundle | None = None,
              **limits: int) -> ExecutionSpec:
    loop = asyncio.get_running_loop()
    return ExecutionSpec(
        request_id="microvm-test", function_id="microvm", command=tuple(command),
        env=env or {}, payload=payload, deadline=loop.time() + timeout_s,
        limits=Limits(**limits), bundle=bundle,
    )


def vmm_pids(run_dir: Path) -> list[int]:
    """PIDs of live VMM processes whose command line mentions ``run_dir``."""
    pids = []
    marker = str(run_dir).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def host_children_and_threads(pid: int) -> tuple[int, int]:
    """(processes whose parent is ``pid``, threads of ``pid``) right now."""
    children = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children += 1
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        threads = int(status.split("Threads:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        threads = 0
    return children, threads


def vmm_processes(run_dir: Path) -> list[str]:
    """Command lines of live processes that mention ``run_dir`` (our VMMs)."""
    found = []
    marker = str(run_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline and (b"qemu" in cmdline or b"firecracker" in cmdline
                                  or b"jailer" in cmdline):
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def assert_no_vm_leaks(run_dir: Path) -> None:
    deadline = time.monotonic() + 5
    while True:
        procs, left = vmm_processes(run_dir), sorted(p.name for p in run_dir.iterdir())
        if not procs and not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"leaked VMM processes {procs} / files {left} in {run_dir}")
        time.sleep(0.05)
