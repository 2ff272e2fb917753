"""One microVM's lifecycle, whatever the VMM: spawn, wait for the agent, run, kill.

    NEW --spawn()--> SPAWNED --wait_ready()--> READY --run()--> DONE
      \\________________ kill() from any state ________________/--> KILLED

``spawn`` makes a private work folder (scratch disk, channel socket, console
log, VMM config; named ``faas-vm-<instance id>-*`` after the server that made
it), leases the VM its own host uid (``HostUidPool``: when the server runs as
root the VMM drops to that uid, one per running VM, distinct from the
containers' ``nobody`` and the sandboxes' range), prepares the channel and
starts the VMM; ``wait_ready``
connects to the agent and reads its HELLO (for a VM restored from a snapshot,
whose agent said HELLO before the snapshot, the host first sends a PING with
fresh entropy and the agent answers with a new HELLO); ``run`` sends one
request and reads the reply. Keeping these apart lets a pool spawn and boot
VMs (or restore snapshots) ahead of any request.

Every wait races the VMM's exit (a pidfd watched on the loop), so a guest
that panics or an agent that dies gives a ``SandboxError`` carrying the
console tail at once instead of a hang. Callers bound each step with their
own deadline (``asyncio.timeout_at``).

Teardown order in ``kill()`` (idempotent; cancellation-safe):
1. close the channel (our sockets, the listening socket file);
2. SIGKILL the VMM's process group;
3. wait (bounded) for the exit, reap it, close the pidfd;
4. remove the work folder, give the host uid back.
If the wait is cut short (cancellation), the reap and removal happen in a
loop callback as soon as the process is gone, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

from faas import instance
from faas.errors import AgentProtocolError, FaasError, SandboxError
from faas.executors.microvm.channel import Channel, Streams
from faas.executors.microvm.config import VMConfig
from faas.executors.microvm.uids import HostUidPool, default_uids, vmm_drops_privileges
from faas.executors.microvm.workdirs import start_time
from faas.images.common import ImageBuildError
from faas.images.disk import make_scratch_disk
from faas.proc.exitwatch import ExitWatch
from faas.protocol import AgentReply, AgentRequest, Kind, encode_ping, read_frame

T = TypeVar("T")
VMM_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8"}
_KILL_WAIT_S = 5.0
# After the VMM exits, how long buffered channel data may still be read.
_DRAIN_AFTER_EXIT_S = 0.3
_PR_SET_PDEATHSIG = 1


class VMState(enum.Enum):
    NEW = "new"
    SPAWNED = "spawned"
    READY = "ready"
    DONE = "done"
    KILLED = "killed"


class Driver(Protocol):
    """What a VMM contributes: its channel and its command line."""

    name: str

    def channel(self, config: VMConfig, workdir: Path) -> Channel: ...

    def command(self, config: VMConfig, workdir: Path, uid: int | None = None) -> list[str]:
        """argv that boots ``config``; may write config files into ``workdir``.
        ``uid``: the host uid (and gid) the VMM must drop to, or None to keep ours."""
        ...


# Resolved once in the parent: the child must not dlopen between fork and exec.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """In the child between fork and exec: SIGKILL me if the server dies."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class MicroVM:
    """A single-use VM. Use ``async with`` or call ``kill()`` on every path."""

    def __init__(self, driver: Driver, config: VMConfig, *, run_dir: Path | None = None,
                 restore_from: Path | None = None, warm_up: bool = False,
                 uids: HostUidPool | None = None) -> None:
        """``restore_from``: a saved VM state the VMM reads on its stdin (the driver's
        command line says so, e.g. QEMU ``-incoming fd:0``); such a VM needs no
        scratch disk of its own here (the driver provides one) and is resumed with
        a PING instead of waiting for a first HELLO. ``warm_up``: before READY the
        agent runs ``true`` once (PING ``warmup``), which under QEMU TCG makes the
        first real request about twice as fast; for VMs that wait in a pool."""
        self.driver = driver
        self.config = config
        self.run_dir = run_dir
        self.restore_from = restore_from
        self.warm_up = warm_up
        self.start_kind = "restored" if restore_from is not None else "cold"
        self.state = VMState.NEW
        self._uids = uids if uids is not None else default_uids
        self.host_uid: int | None = None
        self.workdir: Path | None = None
        self.timings: dict[str, float] = {}
        self._popen: subprocess.Popen[bytes] | None = None
        self._watch: ExitWatch | None = None
        self._exited: asyncio.Future[int] | None = None
        self._channel: Channel | None = None
        self._streams: Streams | None = None
        self._t0 = time.monotonic()
        self.hello: dict[str, Any] = {}

    async def __aenter__(self) -> MicroVM:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    # -- lifecycle -----------------------------------------------------------------
    async def spawn(self) -> None:
        """Make the work folder and scratch disk, prepare the channel, start the VMM."""
        if self.state is not VMState.NEW:
            raise SandboxError(f"spawn() on a VM in state {self.state.value}")
        self._t0 = time.monotonic()
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir = Path(tempfile.mkdtemp(prefix=f"faas-vm-{instance.instance_id()}-",
                                                       dir=self.run_dir))
        self.state = VMState.SPAWNED  # from here on kill() has something to clean
        if vmm_drops_privileges():
            self.host_uid = self._uids.lease()
        if self.restore_from is None:
            try:
                await asyncio.to_thread(make_scratch_disk, workdir / "scratch.ext4",
                                        self.config.scratch_bytes)
            except ImageBuildError as exc:
                raise SandboxError(f"cannot make the scratch disk: {exc}") from exc
        self._channel = self.driver.channel(self.config, workdir)
        await self._channel.prepare()
        argv = self.driver.command(self.config, workdir, self.host_uid)
        self._start_process(argv, workdir)
        self.timings["spawn_ms"] = self._ms()

    def _start_process(self, argv: list[str], workdir: Path) -> None:
        log = open(workdir / "vmm.log", "wb")  # noqa: SIM115 - handed to the child
        stdin: Any = subprocess.DEVNULL
        # A fixed environment: the server's own (secrets, tokens) never reaches a
        # process that guest code might one day take over. Temporary files the
        # VMM makes (QEMU's snapshot=on overlays) go in the work folder.
        env = {**VMM_ENV, "TMPDIR": str(workdir)}
        try:
            if self.restore_from is not None:
                stdin = open(self.restore_from, "rb")  # noqa: SIM115 - handed to the child
            self._popen = subprocess.Popen(
                argv, stdin=stdin, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=workdir, close_fds=True, process_group=0, preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise SandboxError(f"cannot start {self.driver.name}: {exc}") from exc
        finally:
            log.close()
            if stdin is not subprocess.DEVNULL:
                stdin.close()
        (workdir / "vmm.pid").write_text(f"{self._popen.pid} {start_time(self._popen.pid)}\n")
        try:
            self._watch = ExitWatch.of(self._popen)
        except OSError as exc:
            self._signal_kill()
            raise SandboxError(f"pidfd_open failed: {exc}") from exc
        self._exited = self._watch.exited()

    async def wait_ready(self) -> None:
        """Connect to the agent and read its HELLO. Raises ``SandboxError`` if the VM dies."""
        if self.state is not VMState.SPAWNED or self._channel is None:
            raise SandboxError(f"wait_ready() on a VM in state {self.state.value}")
        self._streams = await self._until_exit(self._channel.open(), "connecting to the agent")
        self.timings["connect_ms"] = self._ms()
        if self.restore_from is not None:
            self._send_ping()
        self.hello = await self._read_hello()
        if (self.warm_up and self.restore_from is None
                and "ping" in self.hello.get("features", [])):
            self._send_ping()
            self.hello = await self._read_hello()
        self.timings["ready_ms"] = self._ms()
        self.state = VMState.READY

    def _send_ping(self) -> None:
        if self._streams is not None:
            self._streams[1].write(encode_ping(os.urandom(64), time.time(),
                                               warmup=self.warm_up))

    async def _read_hello(self) -> dict[str, Any]:
        if self._streams is None:
            raise SandboxError("no agent channel")
        try:
            frame = await self._until_exit(read_frame(self._streams[0], body_timeout_s=10.0),
                                           "waiting for the agent's HELLO")
        except (ConnectionError, OSError) as exc:
            await self._raise_if_exits(f"the agent channel broke before its HELLO ({exc})")
            raise SandboxError(f"the agent channel broke before its HELLO: {exc}"
                               f"{self._console_suffix()}") from exc
        if frame is None:
            await self._raise_if_exits("the agent channel closed before its HELLO")
        if frame is None or frame.kind is not Kind.HELLO:
            got = "end of stream" if frame is None else frame.kind.name
            raise AgentProtocolError(f"expected the agent's HELLO, got {got}")
        return frame.header

    async def exits_within(self, timeout_s: float) -> bool:
        """Whether the VMM exits (or has exited) within ``timeout_s``."""
        if self._exited is None:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._exited)
        return self._exited.done()

    def healthy(self) -> bool:
        """True while the VM is READY, its VMM runs and the channel is open and quiet.

        A pool asks this before handing the VM out: a VMM that exited or a
        channel the guest closed (EOF) means the VM must be destroyed instead.
        """
        if self.state is not VMState.READY or self._streams is None or self._popen is None:
            return False
        if self._exited is None or self._exited.done() or self._popen.poll() is not None:
            return False
        reader, writer = self._streams
        return not (reader.at_eof() or writer.is_closing())

    async def run(self, request: AgentRequest) -> AgentReply:
        """Send one request; return the agent's reply."""
        if self.state is not VMState.READY or self._streams is None:
            raise SandboxError(f"run() on a VM in state {self.state.value}")
        reader, writer = self._streams
        self.state = VMState.DONE
        writer.write(request.encode())
        max_frame = 2 * request.output_limit + 1024 * 1024
        frame = await self._until_exit(
            self._send_and_read(writer, reader, max_frame), "running the command",
            drain_s=_DRAIN_AFTER_EXIT_S)
        if frame is None:
            await self._raise_if_exits("the agent closed the channel without replying")
            raise SandboxError("the agent closed the channel without replying"
                               f"{self._console_suffix()}")
        self.timings["reply_ms"] = self._ms()
        return AgentReply.from_frame(frame)

    @staticmethod
    async def _send_and_read(writer: asyncio.StreamWriter, reader: asyncio.StreamReader,
                             max_frame: int) -> Any:
        try:
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            raise SandboxError(f"the agent channel broke while sending the request: {exc}"
                               ) from exc
        try:
            return await read_frame(reader, max_frame=max_frame, body_timeout_s=30.0)
        except (ConnectionError, OSError) as exc:
            raise SandboxError(f"the agent channel broke: {exc}") from exc

    async def _raise_if_exits(self, what: str, wait_s: float = 1.0) -> None:
        """After a channel EOF: if the VMM exits shortly, say so with its output."""
        if self._exited is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                rc = await asyncio.shield(self._exited)
                raise SandboxError(f"{what}: the VM exited (status {rc})"
                                   f"{self._console_suffix()}")

    async def _until_exit(self, coro: Coroutine[Any, Any, T], what: str, *,
                          drain_s: float = 0.0) -> T:
        """Await ``coro`` unless the VMM exits first (then ``SandboxError``)."""
        exited = self._exited
        if exited is None:
            coro.close()
            raise SandboxError(f"no VMM process while {what}")
        task = asyncio.ensure_future(coro)
        try:
            waiters: set[asyncio.Future[Any]] = {task, exited}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and drain_s:
                await asyncio.wait({task}, timeout=drain_s)
            if task.done():
                return task.result()
            rc = exited.result()
            raise SandboxError(f"the VM exited (status {rc}) while {what}"
                               f"{self._console_suffix()}")
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, FaasError, OSError):
                    await task

    # -- teardown ------------------------------------------------------------------
    def _signal_kill(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self._streams is not None:
            with contextlib.suppress(RuntimeError, OSError):
                self._streams[1].close()
        popen = self._popen
        if popen is not None and popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                popen.kill()

    async def kill(self) -> None:
        """Destroy the VM and everything it made. Idempotent; safe under cancellation."""
        if self.state is VMState.KILLED:
            return
        self.state = VMState.KILLED
        self._signal_kill()
        try:
            if self._exited is not None and not self._exited.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_KILL_WAIT_S):
                        await asyncio.shield(self._exited)
        finally:
            self._finish()

    def _finish(self) -> None:
        """Reap the VMM (now, or from a loop callback as soon as it dies), then remove
        the work folder and give the uid back."""
        if self._watch is not None:
            self._watch.release(then=self._remove_workdir)
        elif self._popen is None or self._popen.poll() is not None:
            self._remove_workdir()
        # else: no watch on a live VMM (pidfd_open failed after it started): it was
        # SIGKILLed; the crash sweep removes its folder once it is gone.

    def _remove_workdir(self) -> None:
        """Remove the work folder and give the uid back (the VMM is reaped, or never ran)."""
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.host_uid is not None:
            self._uids.release(self.host_uid)
            self.host_uid = None

    # -- diagnostics ---------------------------------------------------------------
    def console_tail(self, limit: int = 2000) -> str:
        """The end of the guest console and the VMM's own output, for error messages."""
        if self.workdir is None:
            return ""
        chunks = []
        for name in ("console.log", "vmm.log"):
            with contextlib.suppress(OSError):
                data = (self.workdir / name).read_bytes()[-limit:]
                if data.strip():
                    chunks.append(data.decode("utf-8", "replace").strip())
        return "\n".join(chunks)[-limit:]

    def _console_suffix(self) -> str:
        tail = one_line(self.console_tail())
        return f"; console: {tail}" if tail else ""

    def _ms(self) -> float:
        return (time.monotonic() - self._t0) * 1000


_KEY_LINES = ("Kernel panic", "faas-init", "faas-initramfs")


def one_line(text: str, limit: int = 600) -> str:
    """Console output as one line (for error messages and ``faas doctor``): the lines
    that say what went wrong (a panic, our init's complaints) first, then the end."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    key = [line for line in lines if any(k in line for k in _KEY_LINES)][-2:]
    joined = " | ".join(lines)
    if len(joined) > limit:
        joined = "..." + joined[-limit:]
    return " | ".join([*key, joined]) if key else joined
