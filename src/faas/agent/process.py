"""Run one child process on the asyncio loop with bounded output and a hard deadline.

This is the core the guest agent serves over its channel, and the namespace
sandbox drives directly (a Python start inside the sandbox would cost several
times the bubblewrap floor). No asyncio child watcher and no threads: pipes are
non-blocking fds watched with ``add_reader``/``add_writer`` and exit is a
``pidfd``.

Rules it keeps:

* Output beyond ``output_limit`` per stream is read and dropped, never left in
  the pipe, so a flooding child cannot block on a full pipe; the stream is
  flagged truncated.
* At the deadline the child is killed with ``kill()`` (the caller may install a
  hook that kills a whole sandbox), the partial output is kept and
  ``timed_out`` is set.
* On every path, cancellation included, the child is killed if it still runs,
  every fd is closed and the process is reaped (later, without blocking the
  loop, if it has not died yet).
* A child that exits without reading its stdin only means the rest of stdin
  is dropped: the write that meets the closed pipe blocks SIGPIPE around
  itself and takes back the pending signal, so the EPIPE never kills the
  caller even where SIGPIPE has its default action (a CLI that restores it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

_CHUNK = 65536
# After the main process exits, how long background children holding the
# pipes open may keep them before we stop reading.
_EOF_GRACE_S = 0.25
# After a kill, how long we wait for the tree to die and the pipes to close.
_KILL_WAIT_S = 2.0

_pending_reaps: set[ChildProcess] = set()
_SIGPIPE = {signal.SIGPIPE}


def write_no_sigpipe(fd: int, data: bytes | memoryview) -> int:
    """``os.write`` that reports a closed pipe as ``BrokenPipeError`` and never as a
    SIGPIPE, whatever SIGPIPE's disposition (SIGPIPE is sent to the writing thread,
    so blocking it for this thread and taking it back leaves no trace)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGPIPE)
    try:
        return os.write(fd, data)
    except BrokenPipeError:
        if signal.SIGPIPE not in old:
            signal.sigtimedwait(_SIGPIPE, 0)
        raise
    finally:
        if signal.SIGPIPE not in old:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


@dataclass(slots=True)
class ProcessOutcome:
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    returncode: int | None  # negative: killed by that signal (subprocess convention)
    timed_out: bool
    duration_s: float


class _Capture:
    __slots__ = ("buf", "eof", "limit", "truncated")

    def __init__(self, limit: int) -> None:
        self.buf = bytearray()
        self.limit = limit
        self.truncated = False
        self.eof = False

    def feed(self, data: bytes) -> None:
        room = self.limit - len(self.buf)
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        self.buf += data


class ChildProcess:
    """A spawned child whose pipes and exit are watched on the running loop."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self._pidfd: int | None = os.pidfd_open(popen.pid)
        self.kill_hook: Callable[[], None] | None = None
        self._closed = False

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None = None,
        pass_fds: Sequence[int] = (),
        user: int | None = None,
        group: int | None = None,
    ) -> ChildProcess:
        """Start ``argv`` in a new session with three pipes. Raises ``OSError`` on failure."""
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
            close_fds=True,
            user=user,
            group=group,
            extra_groups=[] if group is not None else None,
        )
        try:
            return cls(popen)
        except OSError:
            popen.kill()
            popen.wait()
            raise

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def kill(self) -> None:
        """SIGKILL the child's process group (and whatever the hook owns). Idempotent."""
        if self.kill_hook is not None:
            self.kill_hook()
        if self._popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(signal.SIGKILL)

    async def communicate(
        self, stdin: bytes, *, output_limit: int, deadline: float | None
    ) -> ProcessOutcome:
        """Feed ``stdin``, capture output, wait for exit or ``deadline`` (loop clock)."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        out, err = _Capture(output_limit), _Capture(output_limit)
        finished = loop.create_future()
        exited = False
        grace: asyncio.TimerHandle | None = None
        popen = self._popen
        assert popen.stdin and popen.stdout and popen.stderr  # noqa: S101 - set by spawn()
        in_fd, out_fd, err_fd = popen.stdin.fileno(), popen.stdout.fileno(), popen.stderr.fileno()
        pidfd = self._pidfd
        assert pidfd is not None  # noqa: S101
        view = memoryview(stdin)

        def check_done() -> None:
            if exited and out.eof and err.eof and not finished.done():
                finished.set_result(None)

        def stop_reading(fd: int, cap: _Capture) -> None:
            if not cap.eof:
                cap.eof = True
                loop.remove_reader(fd)
            check_done()

        def on_readable(fd: int, cap: _Capture) -> None:
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                cap.feed(data)
            else:
                stop_reading(fd, cap)

        def close_stdin() -> None:
            # Once closed, in_fd's number may belong to someone else: touch it once.
            if popen.stdin is not None and not popen.stdin.closed:
                loop.remove_writer(in_fd)
                with contextlib.suppress(OSError):
                    popen.stdin.close()

        def on_writable() -> None:
            nonlocal view
            try:
                written = write_no_sigpipe(in_fd, view[:_CHUNK])
            except BlockingIOError:
                return
            except OSError:  # EPIPE: the child does not read its stdin; the rest is dropped
                close_stdin()
                return
            view = view[written:]
            if not view:
                close_stdin()

        def give_up_on_pipes() -> None:
            stop_reading(out_fd, out)
            stop_reading(err_fd, err)

        def on_exit() -> None:
            nonlocal exited, grace
            loop.remove_reader(pidfd)
            popen.wait()
            exited = True
            close_stdin()
            grace = loop.call_later(_EOF_GRACE_S, give_up_on_pipes)
            check_done()

        for fd in (in_fd, out_fd, err_fd):
            os.set_blocking(fd, False)
        loop.add_reader(out_fd, on_readable, out_fd, out)
        loop.add_reader(err_fd, on_readable, err_fd, err)
        loop.add_reader(pidfd, on_exit)
        if view:
            loop.add_writer(in_fd, on_writable)
        else:
            close_stdin()

        timed_out = False
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await asyncio.shield(finished)
            except TimeoutError:
                timed_out = True
                self.kill()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_KILL_WAIT_S):
                        await asyncio.shield(finished)
        finally:
            if grace is not None:
                grace.cancel()
            # remove_reader/remove_writer are no-ops for fds no longer watched.
            for fd in (out_fd, err_fd, pidfd):
                loop.remove_reader(fd)
            if not finished.done():
                finished.cancel()
            close_stdin()
            self._finish()

        rc = popen.returncode
        return ProcessOutcome(
            stdout=bytes(out.buf),
            stderr=bytes(err.buf),
            stdout_truncated=out.truncated,
            stderr_truncated=err.truncated,
            returncode=rc,
            timed_out=timed_out,
            duration_s=time.monotonic() - started,
        )

    def _finish(self) -> None:
        """Kill if still alive, close our pipe ends, reap now or as soon as it dies."""
        if self._closed:
            return
        self._closed = True
        popen = self._popen
        for stream in (popen.stdin, popen.stdout, popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if popen.returncode is None and popen.poll() is None:
            self.kill()
            if popen.poll() is None:
                self._reap_later()
                return
        self._close_pidfd()

    def _reap_later(self) -> None:
        pidfd = self._pidfd
        assert pidfd is not None  # noqa: S101
        loop = asyncio.get_running_loop()
        _pending_reaps.add(self)

        def reap() -> None:
            loop.remove_reader(pidfd)
            self._popen.wait()
            self._close_pidfd()
            _pending_reaps.discard(self)

        loop.add_reader(pidfd, reap)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    async def aclose(self) -> None:
        """Kill, close and reap (for a child that was spawned but never communicated)."""
        self._finish()


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
