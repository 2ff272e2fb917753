"""Unpacking a checked archive into an empty folder the caller made (and removes on failure).

Every entry is checked (name, kind, mode, clashes) before it is written.
Files are created with ``O_CREAT|O_EXCL|O_NOFOLLOW``, so nothing is ever
opened that was already there; symbolic links are created last, once every
entry is known and every link's target is checked, so no write can pass
through a link. Modes are normalised: folders 0755, files 0755 when the
archive marks any execute bit and 0644 otherwise (set explicitly, whatever
the server's umask). A file with setuid, setgid or sticky bits is refused:
no bundle needs them, and an archive that asks for them is confused or
hostile. On folders these bits are dropped instead: they are harmless there
(they only govern files created later, and the tree is read-only), and
``tar`` run inside a setgid project folder records them.
Timestamps, owners, xattrs and ACLs in the archive are ignored: everything
is owned by the server.

Bytes are counted as they are written, and the count stops the unpack at
the limit however small the archive said an entry was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from faas.bundles.archive import Entry, entries
from faas.bundles.limits import BundleLimits
from faas.bundles.names import entry_parts, link_target, rejected
from faas.bundles.tree import Kind, TreeIndex
from faas.errors import BundleRejected

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SPECIAL_BITS = 0o7000  # setuid, setgid, sticky


@dataclass(frozen=True)
class Unpacked:
    unpacked_bytes: int
    files: int


@dataclass(frozen=True)
class _Link:
    name: str
    parts: tuple[str, ...]
    target: str
    through: tuple[tuple[str, ...], ...]


def unpack(archive: BinaryIO, size: int, dest: Path, limits: BundleLimits, *,
           stopped: Callable[[], bool] = lambda: False) -> Unpacked:
    """Unpack ``archive`` (``size`` bytes) into the empty folder ``dest``.

    Raises ``BundleRejected`` for anything unsafe or over ``limits``, and
    when ``stopped()`` turns true (checked before every chunk). On any error
    ``dest`` holds a partial tree: the caller removes it.
    """
    writer = _Writer(dest, limits, stopped)
    index = TreeIndex()
    links: list[_Link] = []
    for entry in entries(archive, size, limits):
        writer.check_stop()
        parts = entry_parts(entry.name, limits)
        if entry.kind is Kind.FILE and entry.mode & _SPECIAL_BITS:
            raise rejected(entry.name, "asks for setuid, setgid or sticky bits")
        index.add(entry.name, parts, entry.kind)
        with _clash_is_rejected(entry.name):
            if entry.kind is Kind.DIR:
                writer.folder(parts)
            elif entry.kind is Kind.FILE:
                writer.file(entry, parts)
            else:
                through = link_target(entry.name, parts, entry.target, limits).through
                links.append(_Link(entry.name, parts, entry.target, through))
    for link in links:
        index.check_link(link.name, link.through)
    for link in links:
        with _clash_is_rejected(link.name):
            writer.folder(link.parts[:-1])
            dest.joinpath(*link.parts).symlink_to(link.target)
    return Unpacked(writer.written, writer.files)


@contextlib.contextmanager
def _clash_is_rejected(name: str) -> Iterator[None]:
    """A path that exists already although the index saw no clash: the server's file
    system folds names (case-insensitive or casefold folders). Refused, never overwritten."""
    try:
        yield
    except FileExistsError as exc:
        raise rejected(name, "clashes with another entry on the server's file system, which "
                             "does not tell these names apart") from exc


class _Writer:
    def __init__(self, dest: Path, limits: BundleLimits, stopped: Callable[[], bool]) -> None:
        self.dest = dest
        self.limits = limits
        self.stopped = stopped
        self.written = 0
        self.files = 0
        self._made: set[tuple[str, ...]] = {()}

    def check_stop(self) -> None:
        if self.stopped():
            raise BundleRejected("unpacking the bundle was stopped before it finished")

    def folder(self, parts: tuple[str, ...]) -> None:
        """Make the folder ``parts`` and those above it (mode 0755)."""
        for depth in range(1, len(parts) + 1):
            if parts[:depth] in self._made:
                continue
            path = self.dest.joinpath(*parts[:depth])
            path.mkdir(mode=0o700)
            path.chmod(0o755)
            self._made.add(parts[:depth])

    def file(self, entry: Entry, parts: tuple[str, ...]) -> None:
        self.folder(parts[:-1])
        fd = os.open(self.dest.joinpath(*parts), _CREATE, 0o600)
        with os.fdopen(fd, "wb") as out:
            for chunk in entry.chunks:
                self.check_stop()
                self.written += len(chunk)
                if self.written > self.limits.unpacked_bytes:
                    raise rejected(entry.name, "takes the bundle over "
                                   f"{self.limits.unpacked_bytes} bytes unpacked")
                out.write(chunk)
            os.fchmod(fd, 0o755 if entry.mode & 0o111 else 0o644)
        self.files += 1
