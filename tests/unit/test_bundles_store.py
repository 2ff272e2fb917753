"""The bundle store with real archives: what a put leaves on disk, deduplication,
races between puts, deadlines and cancellation, removal and the crash sweep."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import stat
import subprocess
import tarfile
import threading
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from faas import instance
from faas.bundles import BundleInfo, BundleLimits, BundleStore, store
from faas.bundles.unpack import Unpacked, unpack
from faas.errors import BundleRejected, RequestTimeout, ValidationError

SCRIPT = b"#!/bin/sh\necho hello from the bundle\n"
DATA = b'{"greeting": "hello"}\n'


async def chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at:at + size]


def sample_zip() -> bytes:
    """Nested folders, an executable script, a data file, an explicit folder entry listed
    after its contents, and a relative link inside the bundle."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content, mode in (("bin/run.sh", SCRIPT, 0o100755),
                                    ("lib/deep/er/data.json", DATA, 0o100600),
                                    ("lib/", b"", 0o040700),
                                    ("README", b"read me\n", 0),
                                    ("bin/data", b"../lib/deep/er/data.json", 0o120777)):
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return buf.getvalue()


def sample_tar(gz: bool = True) -> bytes:
    """The same tree as ``sample_zip``, with a folder carrying setgid and sticky bits (as
    ``tar`` records them in a setgid project folder: dropped, not refused) and owner 4242."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, content, perm, kind in (("./", b"", 0o755, tarfile.DIRTYPE),
                                          ("./bin", b"", 0o3700, tarfile.DIRTYPE),
                                          ("./bin/run.sh", SCRIPT, 0o700, tarfile.REGTYPE),
                                          ("./lib/deep/er/data.json", DATA, 0o640, tarfile.REGTYPE),
                                          ("./README", b"read me\n", 0o600, tarfile.REGTYPE),
                                          ("./bin/data", b"", 0o777, tarfile.SYMTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.size, info.uid = kind, perm, len(content), 4242
            if kind == tarfile.SYMTYPE:
                info.linkname = "../lib/deep/er/data.json"
            tf.addfile(info, io.BytesIO(content) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def tree_of(root: Path) -> dict[str, tuple[str, str]]:
    """path -> (kind and mode, content or link target), links not followed."""
    out: dict[str, tuple[str, str]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", str(path.readlink()))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = (f"dir {stat.S_IMODE(st.st_mode):o}", "")
        else:
            out[rel] = (f"file {stat.S_IMODE(st.st_mode):o}", path.read_text())
    return out


EXPECTED = {
    "README": ("file 644", "read me\n"),
    "bin": ("dir 755", ""),
    "bin/data": ("link", "../lib/deep/er/data.json"),
    "bin/run.sh": ("file 755", SCRIPT.decode()),
    "lib": ("dir 755", ""),
    "lib/deep": ("dir 755", ""),
    "lib/deep/er": ("dir 755", ""),
    "lib/deep/er/data.json": ("file 644", DATA.decode()),
}


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """A server started with umask 077 must still give the sandbox readable files."""
    old = os.umask(0o077)
    yield None
    os.umask(old)


@pytest.mark.parametrize("build", [sample_zip, sample_tar, lambda: sample_tar(gz=False)],
                         ids=["zip", "tar.gz", "tar"])
async def test_an_archive_is_stored_unpacked_with_normalised_modes(
        build: Callable[[], bytes], tmp_path: Path, strict_umask: None) -> None:
    data = build()
    bundles = BundleStore(tmp_path)
    info = await bundles.put(chunks(data))
    assert info == BundleInfo(hashlib.sha256(data).hexdigest(), len(data),
                              len(SCRIPT) + len(DATA) + len(b"read me\n"), 3)
    assert tree_of(bundles.path(info.sha256)) == EXPECTED
    assert (bundles.path(info.sha256) / "bin/data").read_bytes() == DATA  # the link works
    assert bundles.archive_path(info.sha256).read_bytes() == data
    assert bundles.exists(info.sha256) and bundles.info(info.sha256) == info
    folder = bundles.path(info.sha256).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE(bundles.path(info.sha256).stat().st_mode) == 0o755
    assert sorted(p.name for p in bundles.root.iterdir()) == [info.sha256]
    assert all(p.stat(follow_symlinks=False).st_uid == os.getuid() for p in folder.rglob("*"))


async def test_the_same_bytes_twice_give_the_same_info_without_a_second_unpack(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundles = BundleStore(tmp_path)
    first = await bundles.put(chunks(sample_zip()))
    script = bundles.path(first.sha256) / "bin/run.sh"
    inode = script.stat().st_ino

    def no_unpack(*_: object, **__: object) -> Unpacked:
        raise AssertionError("a stored bundle was unpacked again")

    monkeypatch.setattr(store, "unpack", no_unpack)
    second = await bundles.put(chunks(sample_zip(), size=777))
    assert second == first
    assert script.stat().st_ino == inode
    assert sorted(p.name for p in bundles.root.iterdir()) == [first.sha256]


async def test_concurrent_puts_of_one_bundle_all_succeed_and_store_it_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = sample_tar()
    bundles = BundleStore(tmp_path)
    together = threading.Barrier(6, timeout=10)

    def unpack_together(*args: Any, **kwargs: Any) -> Unpacked:
        together.wait()  # all six unpack at once, then race to rename into place
        return unpack(*args, **kwargs)

    monkeypatch.setattr(store, "unpack", unpack_together)
    infos = await asyncio.gather(*(bundles.put(chunks(data, size=97)) for _ in range(6)))
    assert len(set(infos)) == 1
    assert sorted(p.name for p in bundles.root.iterdir()) == [infos[0].sha256]
    assert tree_of(bundles.path(infos[0].sha256)) == EXPECTED


def slow_unpack(release: threading.Event) -> Callable[..., Unpacked]:
    """An unpack that writes a little, signals ``release``, then waits to be stopped."""

    def slow(archive: object, size: int, dest: Path, limits: BundleLimits, *,
             stopped: Callable[[], bool]) -> Unpacked:
        (dest / "partial").write_bytes(b"x" * 1000)
        release.set()
        while not stopped():
            threading.Event().wait(0.01)
        raise BundleRejected("stopped")
    return slow


async def test_cancelling_a_put_stops_the_unpack_thread_and_removes_its_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()
    monkeypatch.setattr(store, "unpack", slow_unpack(started))
    bundles = BundleStore(tmp_path)
    task = asyncio.create_task(bundles.put(chunks(sample_zip())))
    while not started.is_set():
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(bundles.root.iterdir()) == []


async def test_an_unpack_past_the_deadline_is_refused_and_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "unpack", slow_unpack(threading.Event()))
    bundles = BundleStore(tmp_path)
    deadline = asyncio.get_running_loop().time() + 0.3
    with pytest.raises(BundleRejected, match="did not unpack before the deadline"):
        await bundles.put(chunks(sample_zip()), deadline=deadline)
    assert list(bundles.root.iterdir()) == []


async def test_an_upload_that_stalls_past_the_deadline_is_a_request_timeout(
        tmp_path: Path) -> None:
    async def stalled() -> AsyncIterator[bytes]:
        yield sample_zip()[:100]
        await asyncio.sleep(60)

    bundles = BundleStore(tmp_path)
    deadline = asyncio.get_running_loop().time() + 0.2
    with pytest.raises(RequestTimeout):
        await bundles.put(stalled(), deadline=deadline)
    assert list(bundles.root.iterdir()) == []


def test_an_existing_path_is_never_written_through(tmp_path: Path) -> None:
    """What a case-folding file system would make of ``A`` then ``a``: refused, and the
    existing link is not followed."""
    outside = tmp_path / "outside"
    outside.write_text("keep")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "README").symlink_to(outside)
    data = sample_tar()
    with pytest.raises(BundleRejected, match=re.escape("'./README': clashes with another entry")):
        unpack(io.BytesIO(data), len(data), dest, BundleLimits())
    assert outside.read_text() == "keep"


def test_the_unpacker_stops_when_asked(tmp_path: Path) -> None:
    data = sample_tar()
    with pytest.raises(BundleRejected, match="stopped before it finished"):
        unpack(io.BytesIO(data), len(data), tmp_path, BundleLimits(), stopped=lambda: True)


async def test_remove_takes_a_bundle_away_whole(tmp_path: Path) -> None:
    bundles = BundleStore(tmp_path)
    info = await bundles.put(chunks(sample_zip()))
    assert bundles.remove(info.sha256) is True
    assert not bundles.exists(info.sha256) and bundles.info(info.sha256) is None
    assert bundles.remove(info.sha256) is False
    assert list(bundles.root.iterdir()) == []


def test_bundle_ids_are_checked_before_they_become_paths(tmp_path: Path) -> None:
    bundles = BundleStore(tmp_path)
    for bad in ("../../etc", "A" * 64, "0" * 63, "0" * 64 + "/x", ""):
        with pytest.raises(ValidationError):
            bundles.path(bad)
    assert bundles.exists("0" * 64) is False


def test_the_sweep_removes_work_of_dead_servers_only(tmp_path: Path) -> None:
    child = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    dead = f"{int(child.stdout)}x1"
    assert not instance.alive(dead)
    bundles = BundleStore(tmp_path)
    bundles.root.mkdir()
    names = [f".work-{dead}-ab12", f".work-{instance.instance_id()}-cd34",
             ".work-not-an-owner", "0" * 64]
    for name in names:
        (bundles.root / name / "files").mkdir(parents=True)
        (bundles.root / name / "files" / "x").write_text("x")
    assert bundles.sweep_dead_instances() == [f".work-{dead}-ab12"]
    assert sorted(p.name for p in bundles.root.iterdir()) == sorted(names[1:])


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="entries"):
        BundleLimits(entries=0)
