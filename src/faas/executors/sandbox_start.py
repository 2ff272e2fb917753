"""The pieces of a sandbox's race-free start: its uid, its environment, its pid 1.

A launcher sets the rlimits and the host uid, then executes bubblewrap with
``--info-fd`` and ``--block-fd``; bubblewrap reports the sandbox's pid 1
(``read_info``) and waits until the executor has moved it into its cgroup.
This module holds what that sequence needs besides the executor itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
from collections.abc import Iterator

from faas.errors import SandboxError
from faas.proc.exitwatch import ExitWatch
from faas.secrets.values import Secret

_PR_SET_CHILD_SUBREAPER = 36


def env_args_fd(env: dict[str, str]) -> int:
    """A memfd of NUL-separated ``--setenv KEY VALUE`` arguments for ``bwrap --args``.

    The request's variables must not reach the launcher (root) or bubblewrap
    itself (``LD_PRELOAD``, ``LD_AUDIT``, ... would act on them), and must
    not appear on a command line that every host user can read.
    """
    fd = os.memfd_create("faas-env", os.MFD_CLOEXEC)
    try:
        data = b"".join(b"--setenv\0" + k.encode() + b"\0" + v.encode() + b"\0"
                        for k, v in env.items())
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


def secret_fds(secrets: tuple[Secret, ...], fds: list[int]) -> list[tuple[str, int]]:
    """(name, memfd holding its value) per secret, for bubblewrap's ``--file FD PATH``.

    A value lives in anonymous memory only: never a host file, never an
    argument. Each fd is appended to ``fds`` as soon as it exists, so the
    caller closes every one on every path.
    """
    files = []
    for secret in secrets:
        fd = os.memfd_create("faas-secret", os.MFD_CLOEXEC)
        fds.append(fd)
        view = memoryview(secret.value)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
        files.append((secret.name, fd))
    return files


class SandboxInit:
    """The sandbox's pid 1, held by pidfd so it can be awaited and reaped precisely.

    bubblewrap's outer process exits as soon as the command's status is
    known, sometimes before its pid 1 has finished tearing the namespace
    down. That pid 1 is then re-parented to us (we are a child subreaper) and
    reaped here, so no zombie piles up even where the host's pid 1 does not
    reap (e.g. the gateway itself is pid 1 of a container).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._watch = ExitWatch(pid)

    async def reap(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for pid 1 to exit, SIGKILL it if it does not, and reap it
        (now, or from a loop callback the moment it is gone)."""
        exited = self._watch.exited()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(exited)  # (a cancelled future could not be awaited again)
        except TimeoutError:
            self._watch.kill()
            # Its exit (tearing down the pid namespace) takes a moment.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(exited)
        finally:
            self._watch.release()


def become_subreaper() -> bool:
    """Adopt orphaned descendants (PR_SET_CHILD_SUBREAPER); False if the kernel refuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


class UidPool:
    """Host uids for concurrent sandboxes: one per running invocation, never shared."""

    def __init__(self, base: int, size: int) -> None:
        self._free = list(range(base + size - 1, base - 1, -1))

    @contextlib.contextmanager
    def lease(self) -> Iterator[int]:
        if not self._free:
            raise SandboxError("no free sandbox uid (more invocations than the uid pool)")
        uid = self._free.pop()
        try:
            yield uid
        finally:
            self._free.append(uid)


async def read_info(fd: int, deadline: float) -> dict[str, object] | None:
    """Read bubblewrap's --info-fd JSON; None if it closed the fd without writing."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    done: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        data.extend(chunk)
        if (not chunk or data.rstrip().endswith(b"}")) and not done.done():
            done.set_result(None)

    os.set_blocking(fd, False)
    loop.add_reader(fd, on_readable)
    try:
        async with asyncio.timeout_at(deadline):
            await done
    finally:
        loop.remove_reader(fd)
    if not data.strip():
        return None
    try:
        info = json.loads(data)
    except ValueError as exc:
        raise SandboxError(f"bubblewrap wrote unreadable info: {data[:200]!r}") from exc
    if not isinstance(info, dict):
        raise SandboxError("bubblewrap info is not a JSON object")
    return info
