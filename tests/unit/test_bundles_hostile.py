"""Hostile archives, built for real with zipfile/tarfile: each is refused with a
``BundleRejected`` that names the problem, and the store holds nothing new after."""

from __future__ import annotations

import gzip
import io
import stat
import struct
import tarfile
import unicodedata
import warnings
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from faas.bundles import BundleLimits, BundleStore
from faas.bundles.names import shown
from faas.errors import BundleRejected, PayloadTooLarge

MiB = 1024 * 1024


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at:at + size]


def zip_of(*entries: tuple[str, bytes, int]) -> bytes:
    """A zip of (name, content, unix st_mode; 0 = none) entries, deflated."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names: we want them
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644,
           linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.size = kind, mode, linkname, len(data)
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, data


def tar_of(*members: tuple[tarfile.TarInfo, bytes], gz: bool = True,
           fmt: int = tarfile.PAX_FORMAT, encoding: str = "utf-8") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt, encoding=encoding) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return gzip.compress(raw.getvalue(), mtime=0) if gz else raw.getvalue()


def patch_sizes(data: bytes, declared: int) -> bytes:
    """The zip ``data`` (one entry) with its uncompressed size rewritten to ``declared``."""
    out = bytearray(data)
    struct.pack_into("<L", out, 22, declared)  # local file header
    central = out.find(b"PK\x01\x02")
    struct.pack_into("<L", out, central + 24, declared)
    return bytes(out)


def big_zip(size: int) -> bytes:
    """A real zip bomb: ``size`` bytes of zeros in one deflated entry, written in chunks."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros", "w") as f:
        block = bytes(MiB)
        for _ in range(size // MiB):
            f.write(block)
    return buf.getvalue()


def central_directory_bomb(records: int) -> bytes:
    """One real entry whose central directory record is repeated ``records`` times."""
    data = zip_of(("a", b"x", 0))
    central = data.find(b"PK\x01\x02")
    end = data.find(b"PK\x05\x06")
    record = data[central:end]
    body = data[:central] + record * records
    end_record = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, records & 0xFFFF,
                             records & 0xFFFF, len(record) * records, central, 0)
    return body + end_record


def with_flags(data: bytes, bits: int) -> bytes:
    """The zip ``data`` (one entry) with general purpose flag ``bits`` set in both headers
    (zipfile clears flags it did not set itself when writing)."""
    out = bytearray(data)
    for at in (6, out.find(b"PK\x01\x02") + 8):
        struct.pack_into("<H", out, at, struct.unpack_from("<H", out, at)[0] | bits)
    return bytes(out)


def non_utf8_zip(flagged: bool) -> bytes:
    data = zip_of(("cafX.py", b"print(1)\n", 0))
    return with_flags(data, 0x800 if flagged else 0).replace(b"cafX.py", b"caf\xe9.py")


def pax_bomb() -> bytes:
    info = tarfile.TarInfo("a")
    info.pax_headers = {"comment": "x" * (2 * MiB)}
    return tar_of((info, b""))


def bad_crc_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a", b"hello world")
    return buf.getvalue().replace(b"hello world", b"jello world")


def prefixed_zip() -> bytes:
    # Starts like a zip (so it is read as one) but a second zip follows the first's data.
    first = zip_of(("a", b"x", 0))
    return first[:first.find(b"PK\x01\x02")] + zip_of(("b", b"y", 0))


SMALL = BundleLimits(unpacked_bytes=1 * MiB, entries=50)
NFD = unicodedata.normalize("NFD", "café.py")

Case = tuple[Callable[[], bytes], BundleLimits, str]
CASES: dict[str, Case] = {
    # Sizes: declared sizes are not trusted; bombs stop at the limit.
    "zip entry declaring a small size that inflates big": (
        lambda: patch_sizes(zip_of(("big.bin", bytes(4 * MiB), 0)), 1000), SMALL,
        "'big.bin': has corrupt or unsupported content ('Bad CRC-32"),
    "zip bomb over the default unpacked limit": (
        lambda: big_zip(251 * MiB), BundleLimits(), "more than 262144000 bytes"),
    "tar.gz bomb (no declared total to check first)": (
        lambda: tar_of(member("zeros", data=bytes(4 * MiB))), SMALL,
        "'zeros': takes the bundle over 1048576 bytes unpacked"),
    "zip file count bomb": (
        lambda: zip_of(*((f"f{i}", b"", 0) for i in range(51))), SMALL, "more than 50 entries"),
    "tar file count bomb": (
        lambda: tar_of(*(member(f"f{i}") for i in range(51))), SMALL, "more than 50 entries"),
    "zip central directory repeating one record": (
        lambda: central_directory_bomb(30_000), BundleLimits(), "more than 20000 entries"),
    "tar pax header bomb": (
        pax_bomb, BundleLimits(), "header over"),
    # Names.
    "zip ../x": (lambda: zip_of(("../x", b"x", 0)), SMALL, "'../x': has a '..' component"),
    "tar ../x": (lambda: tar_of(member("../x", data=b"x")), SMALL, "'..' component"),
    "tar a/../../x": (lambda: tar_of(member("a/../../x")), SMALL, "'..' component"),
    "zip /etc/x": (lambda: zip_of(("/etc/x", b"x", 0)), SMALL, "'/etc/x': is an absolute name"),
    "tar /etc/x": (lambda: tar_of(member("/etc/x", data=b"x")), SMALL, "absolute name"),
    "zip non-UTF-8 name": (lambda: non_utf8_zip(False), SMALL,
                           "'caf\\xe9.py': the name is not valid UTF-8"),
    "zip name flagged UTF-8 that is not": (
        lambda: non_utf8_zip(True), SMALL, "the archive has an entry name that is not valid UTF-8"),
    "tar non-UTF-8 name": (
        lambda: tar_of(member("café.py"), fmt=tarfile.GNU_FORMAT, encoding="latin-1"), SMALL,
        "'caf\\xe9.py': the name is not valid UTF-8"),
    "name with a control character": (
        lambda: tar_of(member("evil\nname")), SMALL, "'evil\\u{a}name': the name holds a control"),
    "name with a C1 control character": (
        lambda: zip_of(("x\x85y", b"", 0)), SMALL, "'x\\u{85}y': the name holds a control"),
    "name with a backslash": (lambda: zip_of(("..\\x", b"", 0)), SMALL, "backslash"),
    "component longer than 255 bytes": (
        lambda: tar_of(member("a" * 256)), SMALL, "component longer than 255 bytes"),
    "path nested too deep": (
        lambda: tar_of(member("d/" * 64 + "f")), SMALL, "nested deeper than 64 folders"),
    # Duplicates.
    "zip duplicate name": (
        lambda: zip_of(("a.py", b"1", 0), ("a.py", b"2", 0)), SMALL,
        "'a.py': appears twice"),
    "tar duplicate name": (
        lambda: tar_of(member("a.py"), member("./a.py")), SMALL, "appears twice"),
    "file, then a folder of the same name": (
        lambda: zip_of(("a", b"", 0), ("a/b", b"", 0)), SMALL, "'a/b': lies inside a file"),
    "folder, then a file of the same name": (
        lambda: tar_of(member("a/b"), member("a")), SMALL,
        "'a': is a file, but a folder of that name"),
    "Unicode normalisation duplicate": (
        lambda: tar_of(member("café.py"), member(NFD)), SMALL, "normalisation (NFC)"),
    # Links and special files.
    "tar symlink to /etc/passwd": (
        lambda: tar_of(member("passwd", tarfile.SYMTYPE, linkname="/etc/passwd")), SMALL,
        "'passwd': is a symbolic link to an absolute path"),
    "zip symlink to /etc/passwd": (
        lambda: zip_of(("passwd", b"/etc/passwd", stat.S_IFLNK | 0o777)), SMALL,
        "symbolic link to an absolute path"),
    "symlink a -> .. then a/x": (
        lambda: tar_of(member("a", tarfile.SYMTYPE, linkname=".."), member("a/x", data=b"x")),
        SMALL, "'a': is a symbolic link that points outside the bundle"),
    "an entry inside a symlinked folder (sub/a -> .., then sub/a/x)": (
        lambda: tar_of(member("sub/a", tarfile.SYMTYPE, linkname=".."),
                       member("sub/a/x", data=b"x")), SMALL,
        "'sub/a/x': lies inside a symbolic link"),
    "a link that escapes through another link": (
        lambda: tar_of(member("a/b/d", tarfile.SYMTYPE, linkname="../.."),
                       member("a/b/l", tarfile.SYMTYPE, linkname="d/..")), SMALL,
        "'a/b/l': is a symbolic link whose target passes through another"),
    "tar hard link to /etc/passwd": (
        lambda: tar_of(member("pw", tarfile.LNKTYPE, linkname="/etc/passwd")), SMALL,
        "'pw': is a hard link"),
    "tar hard link inside the bundle": (
        lambda: tar_of(member("a", data=b"x"), member("b", tarfile.LNKTYPE, linkname="a")),
        SMALL, "'b': is a hard link"),
    "tar character device": (
        lambda: tar_of(member("mem", tarfile.CHRTYPE)), SMALL, "'mem': is a character device"),
    "tar block device": (
        lambda: tar_of(member("sda", tarfile.BLKTYPE)), SMALL, "is a block device"),
    "tar FIFO": (lambda: tar_of(member("pipe", tarfile.FIFOTYPE)), SMALL, "'pipe': is a FIFO"),
    "zip socket": (lambda: zip_of(("sock", b"", stat.S_IFSOCK | 0o644)), SMALL, "is a socket"),
    "zip character device": (
        lambda: zip_of(("tty", b"", stat.S_IFCHR | 0o644)), SMALL, "is a character device"),
    "tar sparse file": (
        lambda: tar_of(member("holes", tarfile.GNUTYPE_SPARSE), fmt=tarfile.GNU_FORMAT), SMALL,
        "'holes': is a sparse file"),
    "tar setuid file": (
        lambda: tar_of(member("su", data=b"x", mode=0o4755)), SMALL, "'su': asks for setuid"),
    "zip setgid file": (
        lambda: zip_of(("sg", b"x", stat.S_IFREG | 0o2755)), SMALL, "asks for setuid, setgid"),
    "zip sticky file": (
        lambda: zip_of(("t", b"x", stat.S_IFREG | 0o1644)), SMALL, "'t': asks for setuid"),
    # Not an archive, or a broken one.
    "empty upload": (lambda: b"", SMALL, "the bundle is empty"),
    "not an archive": (lambda: b"#!/bin/sh\necho hi\n" * 40, SMALL,
                       "not a zip, tar.gz or tar archive"),
    "truncated tar.gz": (lambda: tar_of(member("a", data=bytes(range(256)) * 400))[:-200], SMALL,
                         "corrupt"),
    "gzip of something that is not a tar": (
        lambda: gzip.compress(b"hello " * 1000), SMALL, "corrupt"),
    "zip with a bad CRC": (
        bad_crc_zip, SMALL, "corrupt"),
    "zip with data before it": (
        prefixed_zip, SMALL, "not where its end record says"),
    "encrypted zip entry": (
        lambda: with_flags(zip_of(("secret", b"x", 0)), 0x1), SMALL, "'secret': is encrypted"),
}


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_hostile_archive_is_refused_and_leaves_nothing(case: str, tmp_path: Path) -> None:
    build, limits, expected = CASES[case]
    data = build()
    store = BundleStore(tmp_path, limits)
    with pytest.raises(BundleRejected) as caught:
        await store.put(chunks(data))
    message = str(caught.value)
    assert expected in message
    assert str(tmp_path) not in message and "/tmp" not in message
    assert caught.value.status == 400
    assert leftovers(tmp_path) == ["bundles"]


async def test_an_upload_over_the_packed_limit_is_413_and_leaves_nothing(tmp_path: Path) -> None:
    store = BundleStore(tmp_path, BundleLimits(packed_bytes=100_000))
    with pytest.raises(PayloadTooLarge, match="larger than 100000 bytes packed"):
        await store.put(chunks(bytes(100_001), size=4096))
    assert leftovers(tmp_path) == ["bundles"]


async def test_the_central_directory_is_counted_before_zipfile_parses_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = central_directory_bomb(30_000)

    def parse(*_: object, **__: object) -> None:
        raise AssertionError("zipfile parsed a central directory over the entry limit")

    monkeypatch.setattr(zipfile, "ZipFile", parse)
    with pytest.raises(BundleRejected, match="more than 20000 entries"):
        await BundleStore(tmp_path).put(chunks(data))


def test_hostile_names_are_clipped_and_escaped_in_messages() -> None:
    assert shown("a\u202eb") == "'a\\u{202e}b'"  # a right-to-left override cannot hide
    assert shown("x\udce9") == "'x\\xe9'"
    assert shown("q'\\") == "'q\\'\\\\'"
    long = shown("n" * 500)
    assert len(long) < 100 and long.endswith("...'")
