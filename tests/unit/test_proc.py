"""The process core's pieces: the capped buffer, the exit watch, the result messages."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import time
from pathlib import Path

from faas.proc.capture import CappedBuffer
from faas.proc.exitwatch import ExitWatch
from faas.proc.outcome import (
    describe_exit,
    describe_oom,
    describe_timeout,
    spawn_error,
)


def test_capped_buffer_keeps_the_first_bytes_and_flags_the_rest() -> None:
    buf = CappedBuffer(5)
    buf.feed(b"abc")
    assert not buf.truncated
    buf.feed(memoryview(b"defg"))
    buf.feed(b"h")
    assert buf.getvalue() == b"abcde" and buf.truncated


def test_the_128_plus_n_rule_applies_only_to_shell_statuses() -> None:
    assert describe_exit(137) == (137, None, "exited with status 137")
    assert describe_exit(137, shell_status=True) == (137, 9, "killed by SIGKILL")
    assert describe_exit(-15) == (143, 15, "killed by SIGTERM")
    assert describe_exit(200, shell_status=True) == (200, None, "exited with status 200")
    assert describe_exit(None)[2] == "the process did not report an exit status"


def test_messages() -> None:
    assert describe_oom(64 << 20) == "out of memory: killed by the cgroup memory limit of 64 MiB"
    assert describe_oom(None).endswith("(no cgroup memory limit)")
    assert describe_timeout("the VM") == "timed out; the VM was killed"
    assert describe_timeout("the container", 2.5) == (
        "timed out after 2.5s; the container was killed")
    assert spawn_error("x", OSError(errno.ENOENT, "nope")) == (127, "command not found: x")
    assert spawn_error("x", OSError(errno.EACCES, "Permission denied")) == (
        126, "command not executable: x (Permission denied)")


async def test_exit_future_and_immediate_release() -> None:
    popen = subprocess.Popen(["sh", "-c", "exit 3"])
    watch = ExitWatch.of(popen)
    assert await asyncio.wait_for(watch.exited(), 10) == 3
    released: list[bool] = []
    watch.release(then=lambda: released.append(True))
    watch.release(then=lambda: released.append(True))  # idempotent
    assert released == [True]


async def test_release_of_a_live_child_reaps_it_the_moment_it_dies() -> None:
    popen = subprocess.Popen(["sleep", "0.3"])
    watch = ExitWatch.of(popen)
    exited = watch.exited()
    released: list[bool] = []
    watch.release(then=lambda: released.append(True))
    assert not released and popen.returncode is None  # nothing waited on a live child
    await asyncio.wait_for(exited, 10)
    for _ in range(100):
        if released:
            break
        await asyncio.sleep(0.01)
    assert released == [True] and popen.returncode == 0
    assert not Path(f"/proc/{popen.pid}").exists()  # reaped: no zombie left


async def test_a_bare_pid_is_reaped_with_its_status_and_killed_through_its_pidfd() -> None:
    """A process that is not a ``Popen`` (as the sandbox's adopted pid 1 is)."""
    env = {"PATH": os.environ["PATH"]}
    pid = os.posix_spawnp("sh", ["sh", "-c", "exit 5"], env)
    watch = ExitWatch(pid)
    assert await asyncio.wait_for(watch.exited(), 10) == 5
    watch.release()
    assert not Path(f"/proc/{pid}").exists()

    pid = os.posix_spawnp("sleep", ["sleep", "60"], env)
    watch = ExitWatch(pid)
    assert watch.poll() is None
    watch.kill()
    assert await asyncio.wait_for(watch.exited(), 10) == -signal.SIGKILL
    watch.release()
    assert not Path(f"/proc/{pid}").exists()


def test_a_release_outlives_its_event_loop() -> None:
    """A process released while alive on a loop that then closes is still reaped (a loop
    reader would never fire again: the process would stay a zombie of ours)."""
    popen = subprocess.Popen(["sleep", "0.3"])

    async def release_and_leave() -> None:
        ExitWatch.of(popen).release()

    asyncio.run(release_and_leave())
    for _ in range(300):
        if not Path(f"/proc/{popen.pid}").exists():
            break
        time.sleep(0.01)
    assert not Path(f"/proc/{popen.pid}").exists(), "left a zombie"
