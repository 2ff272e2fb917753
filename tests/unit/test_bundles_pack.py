"""Packing a local folder for the CLI: deterministic bytes, the same answer the
server gives, and the server's refusals made before anything is uploaded."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
import unicodedata
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from faas.bundles import BundleLimits, BundleStore, pack_folder
from faas.errors import BundleRejected


async def chunks(data: bytes, size: int = 8192) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at:at + size]


def make_project(root: Path, *, reverse: bool = False, file_mode: int = 0o644) -> Path:
    """A small project; ``reverse`` creates it in the opposite order (other inode and
    directory order), ``file_mode`` varies the non-executable files' modes."""
    items: list[tuple[str, bytes | None]] = [
        ("handler.py", b"def handle(event):\n    return event\n"),
        ("bin/", None),
        ("bin/start", b"#!/bin/sh\nexec python3 handler.py\n"),
        ("lib/util/__init__.py", b""),
        ("lib/util/strings.py", b"UPPER = str.upper\n"),
        ("data/é.txt", b"non-ASCII names are fine\n"),
    ]
    root.mkdir()
    for name, content in reversed(items) if reverse else items:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir(exist_ok=True)
        else:
            path.write_bytes(content)
            path.chmod(file_mode)
    (root / "bin/start").chmod(0o700 if reverse else 0o755)
    (root / "bin/handler").symlink_to("../handler.py")
    for i, path in enumerate(sorted(root.rglob("*"))):
        os.utime(path, (1_000_000 + i * (7 if reverse else 1),) * 2, follow_symlinks=False)
    return root


def packed(folder: Path, limits: BundleLimits | None = None) -> bytes:
    out = io.BytesIO()
    pack_folder(folder, out, limits)
    return out.getvalue()


def test_the_same_folder_packs_to_the_same_bytes(tmp_path: Path) -> None:
    first = packed(make_project(tmp_path / "a"))
    again = packed(tmp_path / "a")
    elsewhere = packed(make_project(tmp_path / "b", reverse=True, file_mode=0o600))
    assert first == again == elsewhere
    with tarfile.open(fileobj=io.BytesIO(first)) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == ["bin", "bin/handler", "bin/start", "data", "data/é.txt", "handler.py",
                     "lib", "lib/util", "lib/util/__init__.py", "lib/util/strings.py"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert {m.name: oct(m.mode) for m in members if m.isreg()}["bin/start"] == oct(0o755)


async def test_a_packed_folder_is_what_the_server_stores(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    (project / "hard").hardlink_to(project / "handler.py")  # packed as a plain copy
    (project / "bin/start").chmod(0o4755)  # the folder's setuid bit is dropped, not sent
    out = io.BytesIO()
    info = pack_folder(project, out)
    stored = await BundleStore(tmp_path / "data").put(chunks(out.getvalue()))
    assert stored == info
    tree = BundleStore(tmp_path / "data").path(info.sha256)
    assert (tree / "hard").read_bytes() == (project / "handler.py").read_bytes()
    assert not (tree / "hard").is_symlink() and (tree / "hard").stat().st_nlink == 1
    assert stat.S_IMODE((tree / "bin/start").stat().st_mode) == 0o755
    assert (tree / "bin/handler").readlink() == Path("../handler.py")
    assert info.files == 6


@pytest.mark.parametrize("spoil, expected", [
    (lambda p: (p / "escape").symlink_to("/etc/passwd"), "'escape': is a symbolic link to an"),
    (lambda p: (p / "bin/up").symlink_to("../../x"), "'bin/up': is a symbolic link that points"),
    (lambda p: os.mkfifo(p / "pipe"), "'pipe': is a FIFO"),
    (lambda p: socket.socket(socket.AF_UNIX).bind(str(p / "sock")), "'sock': is a socket"),
    (lambda p: (p / os.fsdecode(b"bad\xff.py")).write_text("x"),
     "'bad\\xff.py': the name is not valid UTF-8"),
    (lambda p: (p / unicodedata.normalize("NFD", "data/é.txt")).write_text("x"),
     "normalisation (NFC)"),
], ids=["symlink to /etc/passwd", "symlink above the folder", "FIFO", "socket",
        "non-UTF-8 name", "NFC duplicate"])
def test_packing_refuses_what_the_server_would(spoil: Callable[[Path], object], expected: str,
                                               tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    spoil(project)
    out = io.BytesIO()
    with pytest.raises(BundleRejected) as caught:
        pack_folder(project, out)
    assert expected in str(caught.value)
    assert out.getvalue() == b""


def test_packing_refuses_a_folder_over_the_limits(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    with pytest.raises(BundleRejected, match="more than 5 entries"):
        packed(project, BundleLimits(entries=5))
    with pytest.raises(BundleRejected, match="more than 50 bytes"):
        packed(project, BundleLimits(unpacked_bytes=50))
    (project / "noise").write_bytes(os.urandom(20_000))
    with pytest.raises(BundleRejected, match="larger than 10000 bytes packed"):
        packed(project, BundleLimits(packed_bytes=10_000))
