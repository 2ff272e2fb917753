"""The content-addressed bundle store: ``<data_dir>/bundles/<sha256>/``.

Layout of one stored bundle (made in a work folder, then renamed into place
in one step, so a bundle folder is either absent or complete)::

    bundles/<sha256>/files/     the unpacked tree (mount it read-only at /function)
    bundles/<sha256>/archive    the archive exactly as uploaded (its sha256 is the name)
    bundles/<sha256>/info.json  BundleInfo
    bundles/<sha256>/guest.tar  made later by the microVM tier (its tar for the guest)
    bundles/.work-<instance id>-<random>/   a put or remove in progress

``put`` spools the upload into a work folder inside the store (same file
system, so the final rename is atomic), hashing as it goes; a bundle already
stored is not unpacked again. Two puts of the same content may race: both
unpack, the first rename wins, the second finds the folder taken and
removes its own copy. Every failure removes the work folder; work folders
left by a server that died are removed by ``sweep_dead_instances`` (owner
named by ``faas.instance``, as in the other crash sweeps).

The unpacked tree may hold symbolic links (relative, inside the bundle):
host code walking it must not follow links (``shutil.rmtree`` does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import re
import secrets
import shutil
import threading
from collections.abc import AsyncIterable, Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from faas import instance
from faas.bundles.limits import BundleInfo, BundleLimits, MiB
from faas.bundles.unpack import unpack
from faas.errors import BundleRejected, PayloadTooLarge, RequestTimeout, ValidationError

T = TypeVar("T")
WORK_PREFIX = ".work-"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SPOOL_BATCH = 1 * MiB  # bytes gathered before one thread hop writes and hashes them


class BundleStore:
    """Bundles stored under ``<data_dir>/bundles``, checked against the caller's ``limits``."""

    def __init__(self, data_dir: Path, limits: BundleLimits | None = None) -> None:
        self.root = data_dir / "bundles"
        self.limits = limits if limits is not None else BundleLimits()

    # -- reading ---------------------------------------------------------------------
    def path(self, sha256: str) -> Path:
        """The unpacked tree of bundle ``sha256`` (which may not exist: see ``exists``).

        Raises ``ValidationError`` if ``sha256`` is not 64 lowercase hex digits.
        """
        return self._folder(sha256) / "files"

    def archive_path(self, sha256: str) -> Path:
        """The archive as uploaded, e.g. to hand it to another host."""
        return self._folder(sha256) / "archive"

    def exists(self, sha256: str) -> bool:
        return self._folder(sha256).is_dir()

    def info(self, sha256: str) -> BundleInfo | None:
        """What ``put`` returned for ``sha256``, or None if it is not stored."""
        try:
            return BundleInfo.from_json((self._folder(sha256) / "info.json").read_text())
        except FileNotFoundError:
            return None

    # -- writing ---------------------------------------------------------------------
    async def put(self, source: AsyncIterable[bytes], *,
                  deadline: float | None = None) -> BundleInfo:
        """Store the archive read from ``source``; its info (the same for the same bytes).

        ``deadline`` is in event loop time (``loop.time()``), like an
        invocation's. Raises ``PayloadTooLarge`` past ``limits.packed_bytes``,
        ``RequestTimeout`` if the upload has not arrived by the deadline,
        ``BundleRejected`` if the archive is refused or does not unpack by
        then. Hashing, writing and unpacking run in threads; cancelling the
        call stops the unpack within one chunk and removes what it made.
        """
        await asyncio.to_thread(self._make_root)
        work = await asyncio.to_thread(self._new_work_folder)
        stop = threading.Event()
        receiving = True
        try:
            async with asyncio.timeout_at(deadline):
                sha256, size = await self._spool(source, work / "archive")
                receiving = False
                known = await asyncio.to_thread(self.info, sha256)
                if known is not None:
                    return known
                return await _stoppable(lambda: self._publish(work, sha256, size, stop), stop)
        except TimeoutError as exc:
            if receiving:
                raise RequestTimeout("the bundle upload did not arrive before the deadline") \
                    from exc
            raise BundleRejected("the bundle did not unpack before the deadline") from exc
        finally:
            stop.set()
            await asyncio.to_thread(shutil.rmtree, work, True)

    def remove(self, sha256: str) -> bool:
        """Remove a stored bundle; False if it was not there. Blocking: call it in a thread.

        The folder is first renamed to a work folder, so nobody sees half a
        bundle, and a crash mid-way leaves something the sweep removes.
        """
        trash = self.root / f"{WORK_PREFIX}{instance.instance_id()}-{secrets.token_hex(4)}"
        try:
            self._folder(sha256).rename(trash)
        except FileNotFoundError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def sweep_dead_instances(self) -> list[str]:
        """Remove work folders whose server no longer runs; the names removed.

        A live server's work folders are never touched, so servers sharing a
        data folder do not sweep each other. Blocking: call it at start-up.
        """
        removed: list[str] = []
        try:
            names = [p.name for p in self.root.iterdir()]
        except FileNotFoundError:
            return removed
        for name in names:
            owner = name.removeprefix(WORK_PREFIX).split("-", 1)[0]
            if (name.startswith(WORK_PREFIX) and instance.parse(owner) is not None
                    and not instance.alive(owner)):
                shutil.rmtree(self.root / name, ignore_errors=True)
                removed.append(name)
        return removed

    # -- internals -------------------------------------------------------------------
    def _folder(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValidationError("a bundle id is 64 lowercase hex digits (its sha256)")
        return self.root / sha256

    def _make_root(self) -> None:
        """``bundles/`` is 0711: the sandbox tier's unprivileged uids must pass
        through it to a bundle, but nobody may list which bundles there are."""
        self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        self.root.chmod(0o711)

    def _new_work_folder(self) -> Path:
        work = self.root / f"{WORK_PREFIX}{instance.instance_id()}-{secrets.token_hex(8)}"
        work.mkdir(mode=0o700)
        return work

    async def _spool(self, source: AsyncIterable[bytes], dest: Path) -> tuple[str, int]:
        """Write ``source`` to ``dest``, hashing it; (sha256, size). Bounded by the packed limit."""
        digest = hashlib.sha256()
        out = await asyncio.to_thread(open, dest, "xb")
        try:
            size = 0
            batch: list[bytes] = []
            batched = 0
            async for chunk in source:
                size += len(chunk)
                if size > self.limits.packed_bytes:
                    raise PayloadTooLarge(f"the bundle is larger than {self.limits.packed_bytes} "
                                          "bytes packed")
                batch.append(chunk)
                batched += len(chunk)
                if batched >= _SPOOL_BATCH:
                    await asyncio.to_thread(_write_hashed, out, digest, batch)
                    batch, batched = [], 0
            await asyncio.to_thread(_write_hashed, out, digest, batch)
        finally:
            await asyncio.to_thread(out.close)
        return digest.hexdigest(), size

    def _publish(self, work: Path, sha256: str, size: int, stop: threading.Event) -> BundleInfo:
        """Unpack the spooled archive in ``work`` and rename ``work`` into place (in a thread)."""
        files = work / "files"
        files.mkdir(mode=0o700)
        with open(work / "archive", "rb") as archive:
            done = unpack(archive, size, files, self.limits, stopped=stop.is_set)
        info = BundleInfo(sha256, size, done.unpacked_bytes, done.files)
        (work / "info.json").write_text(info.to_json())
        for path in (work / "info.json", work / "archive"):
            path.chmod(0o644)
        files.chmod(0o755)
        work.chmod(0o755)
        try:
            work.rename(self._folder(sha256))
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            return self.info(sha256) or info  # another put of the same bytes won the race
        return info


def _write_hashed(out: BinaryIO, digest: hashlib._Hash, chunks: list[bytes]) -> None:
    for chunk in chunks:
        digest.update(chunk)
        out.write(chunk)


async def _stoppable(work: Callable[[], T], stop: threading.Event) -> T:
    """Run ``work`` in a thread; if cancelled, set ``stop`` and wait for the thread to end."""
    task = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(Exception):
            await task
        raise
