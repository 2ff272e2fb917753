"""A call's secrets in the namespace sandbox: files at /run/secrets, nowhere else.

bubblewrap copies each value from a memfd into a 0400 file of the command's
uid on a read-only tmpfs (``SandboxPolicy.call_argv``); these tests read it
back from inside and scan the host's processes while a call holds a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from faas.errors import SandboxError
from faas.executors.sandbox import SandboxExecutor
from faas.models import ExecutionSpec, InvocationResult
from faas.secrets.names import MAX_SECRET_BYTES, MAX_SECRETS_PER_FUNCTION
from faas.secrets.values import Secret
from helpers import UID_BASE, assert_nothing_left_by, descendants
from secrets_support import INSIDE, SECRETS, check_inside, host_processes_holding

pytestmark = pytest.mark.sandbox

#: A uid base of these tests' own, inside the leak checks' range.
SECRETS_UID_BASE = UID_BASE + 2048 + 64


@pytest.fixture
async def executor(bwrap_available: None) -> AsyncIterator[SandboxExecutor]:
    made = SandboxExecutor(uid_base=SECRETS_UID_BASE, max_sandboxes=4)
    yield made
    await made.aclose()


async def run(executor: SandboxExecutor, command: list[str],
              secrets: tuple[Secret, ...] = SECRETS) -> InvocationResult:
    loop = asyncio.get_running_loop()
    spec = ExecutionSpec(request_id="secrets", function_id="secrets", command=tuple(command),
                         env={}, payload=b"", deadline=loop.time() + 20, secrets=secrets)
    try:
        return await executor.run(spec)
    finally:
        assert_nothing_left_by(os.getpid(), ignore=_servers())
        assert open_secret_memfds() == [], "a secret's memfd was left open"


def open_secret_memfds() -> list[str]:
    """This process's open memfds that held a secret (``secret_fds`` names them)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith("/memfd:faas-secret"):
            found.append(f"{fd.name} -> {target}")
    return found


def _servers() -> list[int]:
    return [info.pid for info in descendants(os.getpid()) if "faas.cli serve" in info.cmdline]


async def test_secrets_are_read_only_files_of_the_commands_uid_on_a_tmpfs(
        executor: SandboxExecutor) -> None:
    check_inside(await run(executor, ["sh", "-c", INSIDE]))


async def test_the_most_and_largest_secrets_a_call_may_carry_all_fit(
        executor: SandboxExecutor) -> None:
    full = tuple(Secret(f"s{i:02}", bytes([i]) * MAX_SECRET_BYTES)
                 for i in range(MAX_SECRETS_PER_FUNCTION))
    result = await run(executor, ["sh", "-c", "cd /run/secrets && cksum *"], secrets=full)
    assert result.exit_code == 0, result
    assert len(result.stdout.splitlines()) == MAX_SECRETS_PER_FUNCTION, result
    assert all(line.split()[1] == str(MAX_SECRET_BYTES).encode()
               for line in result.stdout.splitlines()), result


async def test_a_call_without_secrets_mounts_nothing_at_run_secrets(
        executor: SandboxExecutor) -> None:
    result = await run(executor, ["sh", "-c", "test -e /run/secrets && echo there; "
                                  "grep -c secrets /proc/self/mounts"], secrets=())
    assert result.stdout == b"0\n", result
    assert "/run/secrets" not in executor.policy.call_argv(None)


async def test_no_host_process_shows_a_secret_while_the_call_runs(
        executor: SandboxExecutor) -> None:
    marker = "sleep 7.4321"
    call = asyncio.create_task(run(executor, ["sh", "-c", f"cat /run/secrets/db; exec {marker}"]))
    until = time.monotonic() + 15
    while not any(marker in p.cmdline for p in descendants(os.getpid())):
        assert time.monotonic() < until and not call.done(), "the call never started"
        await asyncio.sleep(0.05)
    try:
        for secret in SECRETS:
            assert host_processes_holding(secret.value) == []
    finally:
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
    assert_nothing_left_by(os.getpid(), ignore=_servers())


@pytest.fixture
def tree_folder() -> Iterator[Path]:
    """A folder the sandbox uids can reach (pytest's own are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="secrets-tree-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


async def test_no_secret_memfd_stays_open_when_the_launcher_cannot_start(
        executor: SandboxExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "_spawn_helper", Path("/nonexistent/faas-spawn"))
    with pytest.raises(SandboxError, match="cannot start bubblewrap"):
        await run(executor, ["true"])


async def test_a_root_tree_gets_its_secrets_under_an_empty_run_and_needs_run(
        bwrap_available: None, tree_folder: Path) -> None:
    """A configured tree (the guest rootfs: mmdebstrap empties its /run) gets a small
    read-only tmpfs on /run holding the mount point; a tree without /run is refused."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("a tiny root tree needs a static busybox")
    tree = tree_folder / "tree"
    for name in ("usr/local/bin", "run", "proc", "dev", "tmp"):
        (tree / name).mkdir(parents=True)
    shutil.copy(busybox, tree / "usr/local/bin/busybox")
    for applet in ("sh", "cat", "echo", "id", "stat", "awk", "env", "grep", "chmod", "touch",
                   "true"):
        (tree / "usr/local/bin" / applet).symlink_to("busybox")
    executor = SandboxExecutor(uid_base=SECRETS_UID_BASE, max_sandboxes=4, rootfs=tree)
    try:
        check_inside(await run(executor, ["sh", "-c", INSIDE]))
        result = await run(executor, ["sh", "-c", "touch /run/x"])
        assert b"Read-only file system" in result.stderr, result
        # bubblewrap fails after the memfds exist (run() checks they are closed): before
        # or after it reported the sandbox's pid 1, so an error or a failed result.
        (tree / "tmp").rmdir()
        with contextlib.suppress(SandboxError):
            failed = await run(executor, ["true"])
            assert failed.exit_code == 1 and b"Can't mkdir /tmp" in failed.stderr, failed
        (tree / "run").rmdir()
        with pytest.raises(SandboxError, match="configured root tree has no /run folder"):
            await run(executor, ["true"])
    finally:
        await executor.aclose()
