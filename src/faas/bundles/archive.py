"""Reading zip, tar.gz and tar archives as one stream of entries, never trusting what they declare.

The format is told by the content's first bytes, not by a client-supplied
file name. Each reader yields ``Entry`` values in archive order; a regular
file's content is an iterator of chunks that must be consumed before the
next entry is asked for. Refused here, with the entry's name: hard links,
devices, FIFOs, sockets, sparse and encrypted files, unknown entry types.
Every error of the underlying libraries (corrupt data, bad CRC, truncated
stream) becomes ``BundleRejected``; sizes an archive declares are never used
to bound anything (the unpacker counts the bytes actually produced), except
that a zip declaring more than the unpacked limit is refused up front.

A tar stream is read through ``BoundedStream``: ``tarfile`` reads a pax or
GNU long-name header into memory whole, so a compressed gigabyte of header
would otherwise be a gigabyte of memory.
"""

from __future__ import annotations

import gzip
import lzma
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, BinaryIO

from faas.bundles.limits import BundleLimits, MiB
from faas.bundles.names import rejected, shown
from faas.bundles.tree import Kind
from faas.bundles.zipdir import count_entries
from faas.errors import BundleRejected

CHUNK = 64 * 1024
MAX_HEADER_READ = 1 * MiB  # the largest single read tarfile may make (a pax or long-name header)
TAR_OVERHEAD_PER_ENTRY = 4096  # header blocks, padding and a modest pax record per entry

# What the libraries raise on a corrupt or unsupported archive (never a host I/O fault:
# the spool file is ours and fully written before reading starts).
_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, zlib.error,
            gzip.BadGzipFile, lzma.LZMAError, NotImplementedError, UnicodeDecodeError,
            struct.error)

_DEVICE_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
                 stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}


@dataclass
class Entry:
    """One archive entry. ``mode`` holds the permission bits the archive asks for."""

    name: str
    kind: Kind
    mode: int
    target: str = ""  # a symbolic link's target
    chunks: Iterator[bytes] = field(default_factory=lambda: iter(()))


def detect(head: bytes) -> str:
    """``"zip"``, ``"tar.gz"`` or ``"tar"`` from an archive's first 512 bytes."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head[257:262] == b"ustar":
        return "tar"
    if not head:
        raise BundleRejected("the bundle is empty")
    raise BundleRejected("the bundle is not a zip, tar.gz or tar archive")


def entries(archive: BinaryIO, size: int, limits: BundleLimits) -> Iterator[Entry]:
    """The entries of ``archive`` (``size`` bytes, seekable), whatever its format."""
    archive.seek(0)
    kind = detect(archive.read(512))
    archive.seek(0)
    inner = _zip_entries(archive, size, limits) if kind == "zip" else _tar_entries(
        archive, kind == "tar.gz", limits)
    return _translated(inner)


def _translated(inner: Iterator[Entry]) -> Iterator[Entry]:
    """``inner`` with every library error turned into ``BundleRejected``, chunks included."""
    try:
        for entry in inner:
            entry.chunks = _translated_chunks(entry.name, entry.chunks)
            yield entry
    except _CORRUPT as exc:
        raise _corrupt(exc) from exc


def _translated_chunks(name: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    except _CORRUPT as exc:
        raise rejected(name, "has corrupt or unsupported content "
                             f"({shown(str(exc) or type(exc).__name__)})") from exc


def _corrupt(exc: BaseException) -> BundleRejected:
    if isinstance(exc, UnicodeDecodeError):  # zipfile, on a name flagged UTF-8 that is not
        return BundleRejected("the archive has an entry name that is not valid UTF-8")
    detail = shown(str(exc) or type(exc).__name__)
    return BundleRejected(f"the archive is corrupt or uses an unsupported feature ({detail})")


def _read_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(CHUNK):
            yield chunk


# -- zip ---------------------------------------------------------------------------------
def _zip_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as UTF-8 text; bytes that are not UTF-8 become surrogate escapes."""
    if info.flag_bits & 0x800:
        return info.orig_filename
    raw = info.orig_filename.encode("cp437")  # zipfile decoded the raw bytes as cp437
    return raw.decode("utf-8", "surrogateescape")


def _zip_entries(archive: BinaryIO, size: int, limits: BundleLimits) -> Iterator[Entry]:
    count_entries(archive, size, limits.entries)
    archive.seek(0)
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if sum(info.file_size for info in infos) > limits.unpacked_bytes:
            raise BundleRejected(f"the archive declares more than {limits.unpacked_bytes} "
                                 "bytes of content")
        for info in infos:
            name = _zip_name(info)
            if info.flag_bits & 0x1:
                raise rejected(name, "is encrypted")
            unix = info.external_attr >> 16
            ftype, mode = stat.S_IFMT(unix), stat.S_IMODE(unix)
            if info.create_system != 3 and ftype == 0:
                mode = 0o644  # written on DOS/Windows: no Unix mode
            if ftype in _DEVICE_KINDS:
                raise rejected(name, f"is {_DEVICE_KINDS[ftype]}")
            if ftype == stat.S_IFLNK:
                if name.endswith("/"):
                    raise rejected(name, "is named like a folder but is a symbolic link")
                with zf.open(info) as link:
                    raw = link.read(limits.path_bytes + 1)
                if len(raw) > limits.path_bytes:
                    raise rejected(name, f"has a link target longer than {limits.path_bytes} "
                                         "bytes")
                yield Entry(name, Kind.SYMLINK, mode, raw.decode("utf-8", "surrogateescape"))
            elif ftype == stat.S_IFDIR or (ftype == 0 and name.endswith("/")):
                yield Entry(name, Kind.DIR, mode)
            elif ftype in (0, stat.S_IFREG) and not name.endswith("/"):
                yield Entry(name, Kind.FILE, mode, chunks=_read_chunks(zf.open(info)))
            else:
                raise rejected(name, "has an unsupported file type")


# -- tar ---------------------------------------------------------------------------------
class BoundedStream:
    """The file object tarfile reads a tar stream through: forward only, bounded in total
    bytes and in the size of any single read (``MAX_HEADER_READ``)."""

    def __init__(self, inner: IO[bytes] | gzip.GzipFile, cap: int) -> None:
        self._inner = inner
        self._cap = cap
        self._pos = 0

    def read(self, size: int = -1, /) -> bytes:
        if size < 0 or size > MAX_HEADER_READ:
            raise BundleRejected(f"the tar archive has a header over {MAX_HEADER_READ} bytes")
        data = self._inner.read(size)
        self._advance(self._pos + len(data))
        return data

    def seek(self, pos: int, whence: int = 0, /) -> int:
        if whence != 0 or pos < self._pos:
            raise BundleRejected("the tar archive asks to be read backwards")
        if pos > self._pos:
            self._advance(pos)
            self._inner.seek(pos)
        return pos

    def tell(self) -> int:
        return self._pos

    def write(self, data: bytes, /) -> int:
        raise BundleRejected("the tar stream is read-only")

    def close(self) -> None:
        self._inner.close()

    def _advance(self, pos: int) -> None:
        if pos > self._cap:
            raise BundleRejected(f"the tar stream is larger than {self._cap} bytes unpacked")
        self._pos = pos


def _tar_entries(archive: BinaryIO, compressed: bool, limits: BundleLimits) -> Iterator[Entry]:
    cap = limits.unpacked_bytes + limits.entries * TAR_OVERHEAD_PER_ENTRY + MAX_HEADER_READ
    source: IO[bytes] | gzip.GzipFile = archive
    if compressed:
        source = gzip.GzipFile(fileobj=archive, mode="rb")
    stream = BoundedStream(source, cap)
    with tarfile.open(fileobj=stream, mode="r:", encoding="utf-8",
                      errors="surrogateescape") as tf:
        for count, member in enumerate(tf, start=1):
            if count > limits.entries:
                raise BundleRejected(f"the archive has more than {limits.entries} entries")
            yield _tar_entry(tf, member)


def _tar_entry(tf: tarfile.TarFile, member: tarfile.TarInfo) -> Entry:
    name, mode = member.name, member.mode
    if member.islnk():
        raise rejected(name, "is a hard link (store a copy or a symbolic link instead)")
    if member.ischr() or member.isblk() or member.isfifo():
        kind = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK}.get(
            member.type, stat.S_IFIFO)
        raise rejected(name, f"is {_DEVICE_KINDS[kind]}")
    if member.issparse():
        raise rejected(name, "is a sparse file")
    if member.issym():
        return Entry(name, Kind.SYMLINK, mode, member.linkname)
    if member.isdir():
        return Entry(name, Kind.DIR, mode)
    if member.isreg():
        content = tf.extractfile(member)
        if content is None:
            raise rejected(name, "has no readable content")
        return Entry(name, Kind.FILE, mode, chunks=_read_chunks(content))
    raise rejected(name, "has an unsupported entry type")
