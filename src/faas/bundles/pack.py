"""Packing a local folder into a tar.gz bundle, deterministically, for the CLI.

The same folder gives the same bytes, hence the same sha256: entries in
sorted order (depth first, names compared by code point), mtime 0, owner
0:0 without names, modes normalised as the server would (folders 0755,
files 0755 if any execute bit is set, else 0644: setuid and the like are
dropped, not refused, since the folder's own bits are not a request), a
gzip header without name or time. Across zlib versions the compressed bytes
may differ; the tar stream inside does not.

What the server would refuse is refused here first, with the same
messages: names that are not UTF-8 or too long or deep, NFC duplicates,
devices, FIFOs, sockets, symbolic links that leave the folder or pass
through another link, and sizes over the limits. Hard-linked files are
packed as plain copies. A file that changes while being packed makes the
pack fail.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from faas.bundles.limits import BundleInfo, BundleLimits
from faas.bundles.names import entry_parts, link_target, rejected
from faas.bundles.tree import Kind, TreeIndex
from faas.errors import BundleRejected


@dataclass(frozen=True)
class _Planned:
    name: str
    kind: Kind
    mode: int
    size: int = 0
    target: str = ""


def pack_folder(folder: Path, out: BinaryIO, limits: BundleLimits | None = None) -> BundleInfo:
    """Write ``folder`` as a tar.gz bundle to ``out``; what the server will report for it.

    Raises ``BundleRejected`` for what the server would refuse: before
    anything is written, except for the packed size, known only at the end.
    """
    limits = limits if limits is not None else BundleLimits()
    plan = _plan(folder, limits)
    sink = _HashingWriter(out)
    with gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0, compresslevel=9) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT,
                         encoding="utf-8") as tar:
        for item in plan:
            info = tarfile.TarInfo(item.name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = item.mode
            if item.kind is Kind.DIR:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif item.kind is Kind.SYMLINK:
                info.type, info.linkname = tarfile.SYMTYPE, item.target
                tar.addfile(info)
            else:
                info.size = item.size
                try:
                    with open(folder / item.name, "rb") as content:
                        tar.addfile(info, content)
                except OSError as exc:
                    raise rejected(item.name, f"could not be read ({exc.strerror})") from exc
    if sink.size > limits.packed_bytes:
        raise BundleRejected(f"the bundle is larger than {limits.packed_bytes} bytes packed")
    files = [p for p in plan if p.kind is Kind.FILE]
    return BundleInfo(sink.digest.hexdigest(), sink.size, sum(p.size for p in files), len(files))


def _plan(folder: Path, limits: BundleLimits) -> list[_Planned]:
    """Every entry under ``folder`` in archive order, checked as the server checks them."""
    index = TreeIndex()
    plan: list[_Planned] = []
    links: list[tuple[str, tuple[tuple[str, ...], ...]]] = []
    unpacked = 0
    pending = [""]
    while pending:
        prefix = pending.pop()
        try:
            with os.scandir(folder / prefix if prefix else folder) as it:
                children = list(it)
        except OSError as exc:
            raise rejected(prefix or ".", f"could not be listed ({exc.strerror})") from exc
        for child in children:
            name = f"{prefix}/{child.name}" if prefix else child.name
            try:
                st = child.stat(follow_symlinks=False)
                target = str((folder / name).readlink()) if child.is_symlink() else ""
            except OSError as exc:
                raise rejected(name, f"could not be read ({exc.strerror})") from exc
            kind = _kind(name, st.st_mode)
            parts = entry_parts(name, limits)
            index.add(name, parts, kind)
            mode = 0o755 if kind is Kind.DIR or st.st_mode & 0o111 else 0o644
            if kind is Kind.SYMLINK:
                links.append((name, link_target(name, parts, target, limits).through))
                plan.append(_Planned(name, kind, 0o777, target=target))
            elif kind is Kind.DIR:
                plan.append(_Planned(name, kind, mode))
                pending.append(name)
            else:
                unpacked += st.st_size
                plan.append(_Planned(name, kind, mode, size=st.st_size))
            if len(plan) > limits.entries:
                raise BundleRejected(f"the folder has more than {limits.entries} entries")
            if unpacked > limits.unpacked_bytes:
                raise BundleRejected(f"the folder holds more than {limits.unpacked_bytes} bytes")
    for name, through in links:
        index.check_link(name, through)
    # Archive order: sorted by path components, so a folder precedes its contents.
    return sorted(plan, key=lambda p: p.name.split("/"))


def _kind(name: str, mode: int) -> Kind:
    if stat.S_ISDIR(mode):
        return Kind.DIR
    if stat.S_ISLNK(mode):
        return Kind.SYMLINK
    if stat.S_ISREG(mode):
        return Kind.FILE
    what = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
            stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}.get(stat.S_IFMT(mode), "special")
    raise rejected(name, f"is {what}")


class _HashingWriter:
    """Passes writes to ``out``, counting and hashing them."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()
