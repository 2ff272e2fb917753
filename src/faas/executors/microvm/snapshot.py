"""QEMU snapshot restore: boot a guest once to the agent's HELLO, save it, start VMs from it.

Taking a snapshot (once per key, see ``snapshot_key``):
1. boot a VM as usual, plus a QMP socket, and read the agent's HELLO (the
   agent must announce the ``"ping"`` feature);
2. hand QEMU a file descriptor (QMP ``getfd``, SCM_RIGHTS) and ``migrate``
   the running VM to ``fd:`` (QEMU 7.2 has no ``file:`` URI and its seccomp
   sandbox forbids ``exec:``), wait for ``completed``. The VM is not
   ``stop``ped first: the saved run state would then be "paused" and every
   restored VM would stay paused; an idle guest converges at once anyway.
   At the end of a migration QEMU reopens its drives read-only, which as
   its own uid (``-runas``) needs its work folder traversable: the folder is
   made 0711 for this VM (it holds nothing of a user's), and where the run
   folder above it is closed to others the VM keeps root instead (it runs
   only our own image, never a user's command);
3. copy the VM's scratch disk (sparse) beside the state: the guest's page
   cache in the saved RAM matches exactly that disk;
4. write ``meta.json`` and rename the folder into place (atomic, so racing
   servers never see half a snapshot).

Restoring (``RestoreDriver``): the same QEMU command line, with the scratch
drive replaced by the snapshot's disk opened ``snapshot=on`` (QEMU keeps each
VM's writes in a temporary qcow2 overlay in the VM's work folder, so every VM
gets a private copy-on-write disk) and ``-incoming fd:0`` reading the state
on the VMM's stdin. The channel socket path is the new VM's own: chardevs
are not part of the migrated state, only the devices are. The host then
sends a PING with fresh random bytes and the time; the agent reseeds the
kernel CRNG (``RNDRESEEDCRNG``), sets the clock and answers HELLO, so no two
restored VMs share random state.

Snapshots live in ``<image cache>/snapshots/<key>/``. The key hashes the
kernel, initramfs and root disk (whose content includes the agent), the QEMU
binary, the accelerator, the VM shape and the kernel command line, so any of
those changing makes a new snapshot; ``prune`` keeps the current ones and the
``KEEP_SNAPSHOTS`` most recently used others, and removes abandoned partial
folders.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from faas import instance
from faas.errors import SandboxError
from faas.executors.microvm.canary import file_identity
from faas.executors.microvm.channel import Channel
from faas.executors.microvm.config import VMConfig
from faas.executors.microvm.qemu import QemuDriver, _escape
from faas.executors.microvm.vm import MicroVM, one_line
from faas.images.common import inputs_hash

log = logging.getLogger("faas.microvm.snapshot")
SNAPSHOT_FORMAT = "1"
KEEP_SNAPSHOTS = 4
#: Classes whose snapshots this process keeps as "in use" (least recently used
#: beyond it become prunable): a caller choosing a new ``memory_mb`` on every
#: call must not fill the disk with one saved guest per class.
MAX_IN_USE = 8
MAX_STRIKES = 3
_QMP_TIMEOUT_S = 60.0
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Snapshot:
    key: str
    directory: Path

    @property
    def state(self) -> Path:
        return self.directory / "state"

    @property
    def scratch(self) -> Path:
        return self.directory / "scratch.ext4"

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.state, self.scratch, self.directory / "meta.json"))


def snapshot_key(driver: QemuDriver, config: VMConfig) -> str:
    images = config.images
    return inputs_hash([
        SNAPSHOT_FORMAT, file_identity(driver.binary), driver.accel,
        file_identity(driver.kernel(config)), file_identity(images.initrd),
        file_identity(images.rootfs),
        str(config.vcpus), str(config.memory_mib), str(config.scratch_bytes),
        driver.cmdline(config),
    ])


class _DerivedDriver:
    """A QEMU driver whose command line is the base driver's, edited by a subclass."""

    def __init__(self, base: QemuDriver) -> None:
        self.base = base
        self.name = base.name
        self.accel = base.accel

    def channel(self, config: VMConfig, workdir: Path) -> Channel:
        return self.base.channel(config, workdir)


class _SaveDriver(_DerivedDriver):
    """The normal QEMU command line plus a QMP socket, for the VM that is saved."""

    def command(self, config: VMConfig, workdir: Path, uid: int | None = None) -> list[str]:
        argv = self.base.command(config, workdir, uid)
        if "-runas" in argv:
            if _others_can_reach(workdir.parent):
                workdir.chmod(0o711)  # QEMU, no longer root, reopens the scratch disk
            else:
                i = argv.index("-runas")
                del argv[i:i + 2]
        return [*argv, "-qmp", f"unix:{_escape(workdir / 'qmp.sock')},server=on,wait=off"]


def _others_can_reach(folder: Path) -> bool:
    """Whether an unprivileged user may traverse ``folder`` and all above it."""
    try:
        return all(p.stat().st_mode & 0o001 for p in (folder, *folder.parents))
    except OSError:
        return False


class RestoreDriver(_DerivedDriver):
    """The normal QEMU command line, restoring ``snapshot`` instead of booting."""

    def __init__(self, base: QemuDriver, snapshot: Snapshot) -> None:
        super().__init__(base)
        self.snapshot = snapshot

    def command(self, config: VMConfig, workdir: Path, uid: int | None = None) -> list[str]:
        argv = self.base.command(config, workdir, uid)
        scratch = (f"id=scratch,file={_escape(self.snapshot.scratch)},format=raw,if=none,"
                   "snapshot=on,cache=unsafe")
        for i, arg in enumerate(argv):
            if arg.startswith("id=scratch,"):
                argv[i] = scratch
                break
        else:
            raise SandboxError("the QEMU command line has no scratch drive to replace")
        return [*argv, "-incoming", "fd:0"]


# -- taking a snapshot -----------------------------------------------------------------
async def take_snapshot(driver: QemuDriver, config: VMConfig, dest: Path, *,
                        run_dir: Path | None, timeout_s: float) -> Snapshot:
    """Boot ``config``, save it into ``dest`` (made atomically); raises ``SandboxError``."""
    partial = dest.with_name(f"{dest.name}.partial-{instance.instance_id()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    vm = MicroVM(_SaveDriver(driver), config, run_dir=run_dir)
    started = time.monotonic()
    try:
        try:
            async with asyncio.timeout(timeout_s) as scope:
                await vm.spawn()
                await vm.wait_ready()
                if "ping" not in vm.hello.get("features", []):
                    raise SandboxError("the guest agent is too old to resume from a snapshot "
                                       "(rebuild the image: faas image build)")
                workdir = vm.workdir
                if workdir is None:
                    raise SandboxError("the VM has no work folder")
                try:
                    await _save_state(workdir / "qmp.sock", partial / "state", scope)
                except SandboxError as exc:
                    tail = one_line(vm.console_tail(600))
                    raise SandboxError(f"{exc}; VMM output: {tail}") from exc
                await asyncio.to_thread(_sparse_copy, workdir / "scratch.ext4",
                                        partial / "scratch.ext4")
        except TimeoutError as exc:
            raise SandboxError(f"taking the snapshot took over {timeout_s:g}s") from exc
        finally:
            await vm.kill()
        meta = {"key": dest.name, "format": SNAPSHOT_FORMAT, "vcpus": config.vcpus,
                "memory_mib": config.memory_mib, "taken_s": round(time.monotonic() - started, 3),
                "state_bytes": (partial / "state").stat().st_size}
        (partial / "meta.json").write_text(json.dumps(meta) + "\n")
        try:
            partial.rename(dest)
        except OSError:  # another server made it first
            if not Snapshot(dest.name, dest).complete():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return Snapshot(dest.name, dest)


async def _save_state(qmp_path: Path, state_path: Path, scope: asyncio.Timeout) -> None:
    """``_qmp_save`` in a thread, bounded by the caller's deadline (``scope``): on that
    deadline or a cancellation the thread stops at its next step, never later than
    its socket's timeout, which is the time left."""
    loop = asyncio.get_running_loop()
    when = scope.when()
    left = (when - loop.time()) if when is not None else _QMP_TIMEOUT_S
    stop = threading.Event()
    try:
        await asyncio.to_thread(_qmp_save, qmp_path, state_path,
                                deadline=time.monotonic() + left, stop=stop)
    finally:
        stop.set()


def _qmp_save(qmp_path: Path, state_path: Path, *, deadline: float,
              stop: threading.Event) -> None:
    """Migrate the running VM's state into ``state_path`` through QMP, before
    ``deadline`` (monotonic clock) and unless ``stop`` is set."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, \
                open(state_path, "wb") as out:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            sock.connect(str(qmp_path))
            stream = sock.makefile("rb")
            _qmp_read(stream)  # greeting
            _qmp(sock, stream, "qmp_capabilities")
            _qmp(sock, stream, "getfd", {"fdname": "snapshot"}, fd=out.fileno())
            _qmp(sock, stream, "migrate", {"uri": "fd:snapshot"})
            while time.monotonic() < deadline and not stop.is_set():
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                info = _qmp(sock, stream, "query-migrate")
                status = info.get("status")
                if status == "completed":
                    return
                if status in ("failed", "cancelled"):
                    why = info.get("error-desc", status)
                    raise SandboxError(f"QEMU could not save the VM state: {why}")
                time.sleep(0.02)
            raise SandboxError("saving the VM state did not complete in time"
                               if not stop.is_set() else "saving the VM state was abandoned")
    except OSError as exc:
        raise SandboxError(f"QMP failed while saving the VM state: {exc}") from exc


def _qmp(sock: socket.socket, stream: BinaryIO, command: str,
         arguments: dict[str, Any] | None = None, *, fd: int | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"execute": command}
    if arguments:
        message["arguments"] = arguments
    data = json.dumps(message).encode()
    if fd is None:
        sock.sendall(data)
    else:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    while True:
        reply = _qmp_read(stream)
        if "error" in reply:
            raise SandboxError(f"QMP {command} failed: {reply['error'].get('desc', reply)}")
        if "return" in reply:
            result = reply["return"]
            return result if isinstance(result, dict) else {}


def _qmp_read(stream: BinaryIO) -> dict[str, Any]:
    """One QMP message that is not an event."""
    while True:
        line = stream.readline()
        if not line:
            raise SandboxError("QEMU closed its QMP socket")
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise SandboxError(f"QMP sent garbage: {line[:80]!r}") from exc
        if isinstance(message, dict) and "event" not in message:
            return message


def _sparse_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` leaving holes where ``src`` reads as zeros."""
    zero = bytes(_CHUNK)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            if chunk == zero[:len(chunk)]:
                fout.seek(len(chunk), os.SEEK_CUR)
            else:
                fout.write(chunk)
        fout.truncate()


# -- the store --------------------------------------------------------------------------
class SnapshotStore:
    """Snapshots by key: found on disk, or taken once (per key, one at a time)."""

    def __init__(self, directory: Path, *, run_dir: Path | None, timeout_s: float) -> None:
        self.directory = directory
        self.run_dir = run_dir
        self.timeout_s = timeout_s
        self._memo: dict[str, Snapshot] = {}
        self._failed: dict[str, str] = {}
        self._strikes: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def failed(self, key: str, reason: str) -> None:
        """A restore from ``key`` failed; after ``MAX_STRIKES`` in a row this process
        stops using it (a VM killed while restoring is no reason to give up)."""
        self._strikes[key] = self._strikes.get(key, 0) + 1
        if self._strikes[key] >= MAX_STRIKES:
            self._failed[key] = reason
            self._memo.pop(key, None)

    def restored(self, key: str) -> None:
        self._strikes.pop(key, None)

    async def get(self, driver: QemuDriver, config: VMConfig) -> Snapshot:
        """The snapshot for ``config``; raises ``SandboxError`` if it cannot be had."""
        key = snapshot_key(driver, config)
        found = self._memo.pop(key, None)
        if found is not None and found.complete():
            self._memo[key] = found  # most recently used last
            return found
        if key in self._failed:
            raise SandboxError(f"snapshot {key} unusable: {self._failed[key]}")
        async with self._locks.setdefault(key, asyncio.Lock()):
            found = Snapshot(key, self.directory / key)
            if not found.complete():
                try:
                    found = await take_snapshot(driver, config, found.directory,
                                                run_dir=self.run_dir, timeout_s=self.timeout_s)
                except (SandboxError, OSError) as exc:
                    self._failed[key] = str(exc)
                    raise SandboxError(f"cannot take a snapshot: {exc}") from exc
                log.info("took snapshot %s", found.directory)
            with contextlib.suppress(OSError):
                os.utime(found.directory)  # most recently used, for prune
            self._memo[key] = found
            while len(self._memo) > MAX_IN_USE:
                self._memo.pop(next(iter(self._memo)))
            await asyncio.to_thread(self.prune)
            return found

    def prune(self) -> list[Path]:
        """Remove snapshots beyond the ones in use and the newest ``KEEP_SNAPSHOTS``
        others, and partial folders whose builder is gone."""
        removed: list[Path] = []
        current = {s.directory for s in self._memo.values()}
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            return removed
        kept = []
        for entry in entries:
            if ".partial-" in entry.name:
                if not _builder_alive(entry.name.rsplit("-", 1)[1]):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
            elif entry.is_dir() and entry not in current:
                kept.append(entry)
        kept.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for old in kept[KEEP_SNAPSHOTS:]:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
        return removed


def _builder_alive(owner: str) -> bool:
    """Whether the server named at the end of a ``.partial-`` folder still runs: an
    instance id (``faas.instance``), or a bare pid from older servers."""
    if instance.parse(owner) is not None:
        return instance.alive(owner)
    return owner.isdigit() and Path(f"/proc/{owner}").exists()
