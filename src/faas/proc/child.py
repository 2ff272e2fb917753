"""Run one child process on the asyncio loop with bounded output and a hard deadline.

The guest agent serves this over its channel and the namespace sandbox drives
it directly (a Python start inside the sandbox would cost several times the
bubblewrap floor). Pipes are non-blocking fds watched with
``add_reader``/``add_writer``; the exit is an ``ExitWatch``.

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

from faas.proc.capture import CappedBuffer
from faas.proc.exitwatch import ExitWatch
from faas.proc.outcome import ProcessOutcome

_CHUNK = 65536
# After the main process exits, how long background children holding the
# pipes open may keep them before we stop reading.
_EOF_GRACE_S = 0.25
# After a kill, how long we wait for the tree to die and the pipes to close.
_KILL_WAIT_S = 2.0
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


class ChildProcess:
    """A spawned child whose pipes and exit are watched on the running loop."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self._watch = ExitWatch.of(popen)
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
        out, err = CappedBuffer(output_limit), CappedBuffer(output_limit)
        finished = loop.create_future()
        exited = False
        grace: asyncio.TimerHandle | None = None
        popen = self._popen
        assert popen.stdin and popen.stdout and popen.stderr  # noqa: S101 - set by spawn()
        in_fd, out_fd, err_fd = popen.stdin.fileno(), popen.stdout.fileno(), popen.stderr.fileno()
        view = memoryview(stdin)

        def check_done() -> None:
            if exited and out.eof and err.eof and not finished.done():
                finished.set_result(None)

        def stop_reading(fd: int, cap: CappedBuffer) -> None:
            if not cap.eof:
                cap.eof = True
                loop.remove_reader(fd)
            check_done()

        def on_readable(fd: int, cap: CappedBuffer) -> None:
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

        def on_exit(_: asyncio.Future[int]) -> None:
            nonlocal exited, grace
            exited = True
            close_stdin()
            grace = loop.call_later(_EOF_GRACE_S, give_up_on_pipes)
            check_done()

        for fd in (in_fd, out_fd, err_fd):
            os.set_blocking(fd, False)
        loop.add_reader(out_fd, on_readable, out_fd, out)
        loop.add_reader(err_fd, on_readable, err_fd, err)
        exit_future = self._watch.exited()
        exit_future.add_done_callback(on_exit)
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
            exit_future.remove_done_callback(on_exit)
            # remove_reader/remove_writer are no-ops for fds no longer watched.
            for fd in (out_fd, err_fd):
                loop.remove_reader(fd)
            if not finished.done():
                finished.cancel()
            close_stdin()
            self._finish()

        return ProcessOutcome(
            stdout=out.getvalue(),
            stderr=err.getvalue(),
            stdout_truncated=out.truncated,
            stderr_truncated=err.truncated,
            returncode=popen.returncode,
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
        if popen.poll() is None:
            self.kill()
        self._watch.release()

    async def aclose(self) -> None:
        """Kill, close and reap (for a child that was spawned but never communicated)."""
        self._finish()
