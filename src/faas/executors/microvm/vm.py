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
import fcntl
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
from faas.agent.protocol import AgentReply, AgentRequest, Kind, encode_ping, read_frame
from faas.config import VMSettings
from faas.errors import AgentProtocolError, FaasError, SandboxError
from faas.executors.microvm.channel import Channel, Streams
from faas.executors.microvm.config import VMConfig
from faas.executors.microvm.scratch import make_scratch_disk
from faas.images.common import ImageBuildError

T = TypeVar("T")
VMM_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8"}
_KILL_WAIT_S = 5.0
# After the VMM exits, how long buffered channel data may still be read.
_DRAIN_AFTER_EXIT_S = 0.3
_PR_SET_PDEATHSIG = 1
_pending_reaps: set[MicroVM] = set()


class VMState(enum.Enum):
    NEW = "new"
    SPAWNED = "spawned"
    READY = "ready"
    DONE = "done"
    KILLED = "killed"


class Driver(Protocol):
    """What a VMM contributes: its channel and its command line."""

    name: str
    accel: str  # "kvm" or "tcg", reported with each result
    vsock: bool  # whether the guest's agent listens on vsock

    def channel(self, config: VMConfig, workdir: Path) -> Channel: ...

    def command(self, config: VMConfig, workdir: Path, uid: int | None = None) -> list[str]:
        """argv that boots ``config``; may write config files into ``workdir``.
        ``uid``: the host uid (and gid) the VMM must drop to, or None to keep ours."""
        ...


# Host uids of VMMs: FAAS_VMM_UID_BASE + slot, one per running VM. Distinct from
# the containers' 65534 and the namespace sandboxes' 200000 + slot.
VMM_UID_BASE = 300_000
VMM_UIDS = 1024
VMM_UID_LOCK_DIR = Path("/run/faas-vmm-uids")


class HostUidPool:
    """Host uids for VMMs: each running VM holds its own, never shared.

    A uid is leased when the VM is spawned and returned only once its VMM is
    reaped, so a dying VMM and a new one never share a uid. The uid owns no
    file on the host: the VMM opens its disks, kernel and sockets as root
    before it drops to it. Servers on one host share the range: a lease also
    holds an exclusive ``flock`` on ``<lock_dir>/<uid>`` (released by the
    kernel when the server dies), so two live servers never hand out the same
    uid; where ``lock_dir`` cannot be made the leases are this process's only.
    """

    def __init__(self, base: int = VMM_UID_BASE, size: int = VMM_UIDS, *,
                 lock_dir: Path | None = None) -> None:
        self.base, self.size = base, size
        self.lock_dir = lock_dir if lock_dir is not None else VMM_UID_LOCK_DIR
        self._free = list(range(base + size - 1, base - 1, -1))
        self._locks: dict[int, int] = {}

    def lease(self) -> int:
        """A uid no other VM of any live server on this host holds; ``SandboxError`` if none."""
        locking = self._lock_dir_ready()
        for i in range(len(self._free) - 1, -1, -1):
            uid = self._free[i]
            if locking:
                fd = self._try_lock(uid)
                if fd is None:
                    continue
                self._locks[uid] = fd
            del self._free[i]
            return uid
        raise SandboxError(f"no free VMM uid (all {self.size} in use on this host)")

    def release(self, uid: int) -> None:
        fd = self._locks.pop(uid, None)
        if fd is not None:
            os.close(fd)  # drops the flock
        if self.base <= uid < self.base + self.size and uid not in self._free:
            self._free.append(uid)

    def _lock_dir_ready(self) -> bool:
        try:
            self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            return False
        return True

    def _try_lock(self, uid: int) -> int | None:
        try:
            fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd


_uid_pools: dict[tuple[int, int, Path], HostUidPool] = {}


def host_uids(vmm: VMSettings | None = None) -> HostUidPool:
    """This process's one pool of the uid range ``vmm`` names (``FAAS_VMM_UID_*``;
    None: the defaults), shared by every VM leasing from it."""
    key = (vmm.vmm_uid_base, vmm.vmm_uids, vmm.vmm_uid_lock_dir) if vmm is not None else (
        VMM_UID_BASE, VMM_UIDS, VMM_UID_LOCK_DIR)
    if key not in _uid_pools:
        _uid_pools[key] = HostUidPool(key[0], key[1], lock_dir=key[2])
    return _uid_pools[key]


def vmm_drops_privileges(runas: bool = True) -> bool:
    """Whether VMMs get a host uid of their own: only a root server can give one
    (``runas`` False: ``FAAS_QEMU_RUNAS=0``, debugging)."""
    return os.geteuid() == 0 and runas


# Resolved once in the parent: the child must not dlopen between fork and exec.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """In the child between fork and exec: SIGKILL me if the server dies."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class MicroVM:
    """A single-use VM. Use ``async with`` or call ``kill()`` on every path."""

    def __init__(self, driver: Driver, config: VMConfig, *, run_dir: Path | None = None,
                 restore_from: Path | None = None, warm_up: bool = False,
                 uids: HostUidPool | None = None, runas: bool = True) -> None:
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
        self._uids = uids if uids is not None else host_uids()
        self._runas = runas
        self.host_uid: int | None = None
        self.workdir: Path | None = None
        self.timings: dict[str, float] = {}
        self._popen: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
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
        if vmm_drops_privileges(self._runas):
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
        (workdir / "vmm.pid").write_text(f"{self._popen.pid} {_start_time(self._popen.pid)}\n")
        loop = asyncio.get_running_loop()
        self._exited = loop.create_future()
        try:
            self._pidfd = os.pidfd_open(self._popen.pid)
        except OSError as exc:
            self._signal_kill()
            raise SandboxError(f"pidfd_open failed: {exc}") from exc
        loop.add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
        rc = self._popen.wait() if self._popen is not None else -1
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(rc)

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

    def kill_sync(self) -> None:
        """Blocking teardown for when no loop runs (interpreter exit, sync callers)."""
        self.state = VMState.KILLED
        self._signal_kill()
        if self._popen is not None and self._popen.returncode is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=_KILL_WAIT_S)
        self._finish()

    def _finish(self) -> None:
        popen = self._popen
        if popen is not None and popen.poll() is None:
            self._reap_later()
            return
        self._close_pidfd()
        self._remove_workdir()

    def _reap_later(self) -> None:
        pidfd = self._pidfd
        if pidfd is None:
            return
        loop = asyncio.get_running_loop()
        _pending_reaps.add(self)

        def reap() -> None:
            loop.remove_reader(pidfd)
            if self._popen is not None:
                self._popen.wait()
            self._close_pidfd()
            self._remove_workdir()
            _pending_reaps.discard(self)

        loop.remove_reader(pidfd)
        loop.add_reader(pidfd, reap)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

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


def _start_time(pid: int) -> str:
    """A live process's start time in clock ticks (field 22 of /proc/PID/stat);
    '' when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "" if fields[0] in ("Z", "X") else fields[19]


def sweep_stale_workdirs(run_dir: Path | None = None, *, min_age_s: float = 60.0) -> list[Path]:
    """Remove VM work folders (and kill their VMMs) left by servers that are gone.

    A folder named ``faas-vm-<owner>-*`` belongs to the server instance
    ``owner`` (see ``faas.instance``): it is swept only when that instance no
    longer runs, never while it does (two servers may share a run folder).
    Its VMM, named with its start time in ``vmm.pid``, is SIGKILLed first if
    it is still the same process and its command line names the folder (a
    VMM outlives its server when PR_SET_PDEATHSIG did not fire, e.g. its
    spawning thread had exited); its channel socket, console log and disk
    overlays go with the folder. Folders without an owner id (older servers)
    are stale when the process in ``vmm.pid`` is gone, or, without one, when
    older than ``min_age_s``. Returns what was removed.
    """
    base = run_dir if run_dir is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(base.glob("faas-vm-*"))
    except OSError:
        return removed
    for workdir in entries:
        owner = workdir_owner(workdir.name)
        try:
            if owner is not None:
                stale = not instance.alive(owner)
            else:
                stale = _stale_without_owner(workdir, min_age_s)
        except (OSError, ValueError):
            continue
        if stale and workdir.is_dir():
            _kill_leftover_vmm(workdir)
            shutil.rmtree(workdir, ignore_errors=True)
            removed.append(workdir)
    return removed


def workdir_owner(name: str) -> str | None:
    """The instance id in a work folder name ``faas-vm-<owner>-<random>``, or None
    (a folder of an older server, whose random part could look like an id)."""
    owner = name.removeprefix("faas-vm-").split("-", 1)[0]
    return owner if name.startswith("faas-vm-") and instance.parse(owner) else None


def _stale_without_owner(workdir: Path, min_age_s: float) -> bool:
    try:
        pid_text = (workdir / "vmm.pid").read_text().split()
    except OSError:
        pid_text = []
    if pid_text:
        return _start_time(int(pid_text[0])) != (pid_text[1] if len(pid_text) > 1 else "")
    return time.time() - workdir.stat().st_mtime > min_age_s


def _kill_leftover_vmm(workdir: Path, wait_s: float = 2.0) -> None:
    """SIGKILL the VMM recorded in ``workdir/vmm.pid`` if it still runs; wait for it to die.

    Only the very process recorded (same pid and start time) and only if its
    command line mentions ``workdir``: a reused pid is never killed.
    """
    try:
        pid_text = (workdir / "vmm.pid").read_text().split()
        pid, started = int(pid_text[0]), pid_text[1]
    except (OSError, ValueError, IndexError):
        return
    if _start_time(pid) != started:
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if str(workdir).encode() not in cmdline:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while _start_time(pid) == started and time.monotonic() < deadline:
        time.sleep(0.01)


async def boot_probe(driver: Driver, config: VMConfig, *, timeout_s: float,
                     run_dir: Path | None = None, uids: HostUidPool | None = None,
                     runas: bool = True) -> tuple[bool, str, float]:
    """Boot ``config`` with ``driver`` to the agent's HELLO, then destroy it.

    Returns (booted, reason, ms to HELLO); never raises for a failed boot.
    """
    vm = MicroVM(driver, config, run_dir=run_dir, uids=uids, runas=runas)
    try:
        async with asyncio.timeout(timeout_s):
            await vm.spawn()
            await vm.wait_ready()
        return True, f"{driver.name} booted the guest to the agent's HELLO", vm.timings["ready_ms"]
    except TimeoutError:
        tail = one_line(vm.console_tail(600))
        return False, (f"the guest did not reach the agent's HELLO within {timeout_s:g}s"
                       + (f"; VMM/console output: {tail}" if tail else "")), 0.0
    except FaasError as exc:
        return False, str(exc), 0.0
    finally:
        await vm.kill()
