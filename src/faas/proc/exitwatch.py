"""A child's exit as a future on the running loop, and a reap that never blocks.

The child's ``pidfd`` is watched with ``add_reader`` (no threads, no asyncio
child watcher). ``release`` is the one way to let go of a child: it closes the
pidfd at once if the child is dead and reaped, or else reaps it the moment it
dies (a loop callback holds it until then), and then runs the caller's
clean-up. Nothing here ever waits on a live process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Callable

# Watches whose child has not died yet; held so they are not collected early.
_pending: set[ExitWatch] = set()


class ExitWatch:
    """Watches one ``Popen`` child. Raises ``OSError`` if its pidfd cannot be opened."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self._pidfd: int | None = os.pidfd_open(popen.pid)
        self._exited: asyncio.Future[int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def exited(self) -> asyncio.Future[int]:
        """A future of the exit status (subprocess convention), set when the child dies."""
        if self._exited is None:
            loop = self._loop = asyncio.get_running_loop()
            self._exited = loop.create_future()
            if self._pidfd is None:
                self._exited.set_result(self._reaped_status())
            else:
                loop.add_reader(self._pidfd, self._on_exit)
        return self._exited

    def _on_exit(self) -> None:
        self._unwatch()
        status = self._reaped_status()
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(status)

    def _reaped_status(self) -> int:
        # The pidfd is readable (or the child was reaped): wait() returns at once.
        rc = self.popen.returncode
        return rc if rc is not None else self.popen.wait()

    def release(self, then: Callable[[], None] | None = None) -> None:
        """Close the pidfd and call ``then`` once the child is reaped: now if it is
        dead, else from a loop callback the moment it dies. Idempotent."""
        if self._pidfd is None:
            return
        if self.popen.poll() is not None:
            self._close(then)
            return
        loop = asyncio.get_running_loop()
        _pending.add(self)
        self._unwatch()
        pidfd = self._pidfd

        def reap() -> None:
            loop.remove_reader(pidfd)
            self.popen.wait()
            if self._exited is not None and not self._exited.done():
                self._exited.set_result(self.popen.returncode or 0)
            self._close(then)
            _pending.discard(self)

        self._loop = loop
        loop.add_reader(pidfd, reap)

    def _unwatch(self) -> None:
        if self._loop is not None and self._pidfd is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.remove_reader(self._pidfd)

    def _close(self, then: Callable[[], None] | None) -> None:
        self._unwatch()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if then is not None:
            then()
