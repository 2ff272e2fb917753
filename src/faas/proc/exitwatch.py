"""A process's exit as a future on the running loop, and a reap that never blocks.

The process's ``pidfd`` is watched with ``add_reader`` (no asyncio child
watcher). It is either a ``Popen`` child (``ExitWatch.of(popen)``,
reaped through the ``Popen`` so its ``returncode`` is set) or a bare pid, such
as a descendant this process adopted as a child subreaper (reaped with
``waitid(P_PIDFD)``). ``release`` is the one way to let go: it closes the
pidfd at once if the process is dead and reaped, or else reaps it the moment
it dies (a loop callback holds it until then), and then runs the caller's
clean-up. Nothing on the loop ever waits on a live process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import threading
from collections.abc import Callable

# Watches whose process has not died yet; held so they are not collected early.
_pending: set[ExitWatch] = set()
#: The status of a process that was not ours to reap (its parent reaped it).
UNKNOWN_STATUS = -1


class ExitWatch:
    """Watches one process. Raises ``OSError`` if its pidfd cannot be opened."""

    def __init__(self, pid: int, *, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self._popen = popen
        self._pidfd: int | None = os.pidfd_open(pid)
        self.returncode: int | None = None
        self._exited: asyncio.Future[int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def of(cls, popen: subprocess.Popen[bytes]) -> ExitWatch:
        return cls(popen.pid, popen=popen)

    def poll(self) -> int | None:
        """Reap the process if it has exited (never blocks); its status, or None."""
        if self.returncode is not None:
            return self.returncode
        if self._popen is not None:
            self.returncode = self._popen.poll()
        elif self._pidfd is not None:
            try:
                info = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
            except ChildProcessError:  # not (or no longer) our child: its parent reaps it
                info = None
                if _exited_fd(self._pidfd):
                    self.returncode = UNKNOWN_STATUS
            if info is not None:
                killed = info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
                self.returncode = -info.si_status if killed else info.si_status
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the very process watched (a pidfd never reaches a reused pid)."""
        if self._pidfd is not None and self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def exited(self) -> asyncio.Future[int]:
        """A future of the exit status (subprocess convention), set when the process dies."""
        if self._exited is None:
            loop = self._loop = asyncio.get_running_loop()
            self._exited = loop.create_future()
            if self._pidfd is None:
                self._exited.set_result(self._status())
            else:
                loop.add_reader(self._pidfd, self._on_exit)
        return self._exited

    def _on_exit(self) -> None:
        self._unwatch()
        self._settle()

    def _status(self) -> int:
        rc = self.poll()
        return rc if rc is not None else UNKNOWN_STATUS

    def _settle(self) -> None:
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(self._status())

    def release(self, then: Callable[[], None] | None = None) -> None:
        """Close the pidfd and call ``then`` once the process is reaped: now if it is
        dead, else as soon as it dies. Idempotent.

        A process still alive is reaped by a small daemon thread blocked on its
        pidfd (it was killed, so the wait is short), which hands the clean-up
        back to the loop; a loop reader would never fire once its loop is
        closed, and the process would stay a zombie of ours for good.
        """
        if self._pidfd is None:
            return
        if self.poll() is not None:
            self._close(then)
            return
        self._unwatch()
        loop, pidfd = self._loop, self._pidfd
        self._loop = None
        _pending.add(self)

        def finish() -> None:
            self._settle()
            self._close(then)
            _pending.discard(self)

        def reap_when_dead() -> None:
            select.select([pidfd], [], [])  # readable once the process has exited
            self.poll()  # reaps it, whatever happens to the loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    loop.call_soon_threadsafe(finish)
                    return
            self._close(then)  # no loop to hand back to (nor a future to settle on it)
            _pending.discard(self)

        threading.Thread(target=reap_when_dead, name=f"faas-reap-{self.pid}",
                         daemon=True).start()

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


def _exited_fd(pidfd: int) -> bool:
    """Whether the process behind ``pidfd`` has exited (its pidfd polls readable)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))
