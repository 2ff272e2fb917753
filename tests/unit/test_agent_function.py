"""The function's code for microVMs: the REQUEST's bundle blob, the host's tar, the
agent's defensive unpacking and its read-only tmpfs (in a mount namespace of its own)."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundle_support import amake_bundle, data_folder
from faas.agent.function import unpack
from faas.errors import AgentProtocolError
from faas.executors.microvm.bundle_tar import CACHE_NAME, guest_tar
from faas.protocol import MAX_REQUEST_FRAME, AgentRequest, Kind, encode_frame, parse_body

SRC = Path(__file__).resolve().parents[2] / "src"


def tar_of(*entries: tuple[str, str, object]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, kind, extra in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "file":
                data = extra if isinstance(extra, bytes) else b""
                info.size, info.mode = len(data), 0o6777
                tar.addfile(info, io.BytesIO(data))
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, str(extra)
                tar.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, str(extra)
                tar.addfile(info)
            else:
                info.type = tarfile.CHRTYPE
                tar.addfile(info)
    return out.getvalue()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    folder = data_folder()
    yield folder
    shutil.rmtree(folder)


def test_a_request_carries_the_bundle_as_a_second_blob_only_when_it_names_one() -> None:
    request = AgentRequest(["true"], {}, b"in", bundle=("ab" * 32, b"TAR"))
    body = request.encode()[12:]
    again = AgentRequest.from_frame(parse_body(Kind.REQUEST, body))
    assert (again.stdin, again.bundle) == (b"in", ("ab" * 32, b"TAR"))
    plain_body = AgentRequest(["true"], {}).encode()[12:]
    plain = AgentRequest.from_frame(parse_body(Kind.REQUEST, plain_body))
    assert plain.bundle is None
    for header, blobs in (({"command": ["true"]}, [b"", b"TAR"]),
                          ({"command": ["true"], "bundle": "x"}, [b""]),
                          ({"command": ["true"], "bundle": 7}, [b"", b""])):
        frame = parse_body(Kind.REQUEST, encode_frame(Kind.REQUEST, header, blobs)[12:])
        with pytest.raises(AgentProtocolError):
            AgentRequest.from_frame(frame)
    assert MAX_REQUEST_FRAME > 250 * 1024 * 1024


def test_unpack_keeps_folders_files_and_inner_links(tmp_path: Path) -> None:
    unpack(tar_of(("l", "link", "lib/a.py"), ("lib", "dir", None), ("lib/a.py", "file", b"x"),
                  ("run", "file", b"#!"), ("lib/up", "link", "../run")), str(tmp_path))
    assert (tmp_path / "lib" / "up").read_bytes() == b"#!"
    assert (tmp_path / "lib" / "a.py").read_bytes() == b"x"
    assert (tmp_path / "lib" / "a.py").stat().st_mode & 0o7777 == 0o755  # setid bits dropped
    assert (tmp_path / "l").readlink() == Path("lib/a.py")


@pytest.mark.parametrize("entries", [
    [("../x", "file", b"")], [("/etc/x", "file", b"")], [("a/./b", "file", b"")],
    [("..", "dir", None)], [(".", "file", b"")],
    [("l", "link", "../..")], [("l", "link", "/etc/passwd")], [("d", "dev", None)],
    [("h", "hard", "/etc/passwd")],
    [("l", "link", "."), ("l/x", "file", b"")],  # through a link
    [("d", "link", "."), ("l", "link", "d/../etc/passwd")],  # a target through a link
    [("a", "dir", None), ("l", "link", "a/../../x")],
    [("x/y", "file", b"")],                      # under no folder
], ids=["dotdot", "absolute", "dot", "dotdot-folder", "dot-file", "link-out", "link-abs",
        "device", "hardlink", "via-link", "target-via-link", "link-out-deep", "orphan"])
def test_unpack_refuses_what_leaves_the_tree_or_is_not_plain(tmp_path: Path,
                                                             entries: list[tuple[str, str, object]],
                                                             ) -> None:
    """Refused by a check of the agent's own (ValueError), before anything is made."""
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ValueError, match=r"bad entry name|outside|not under|not a folder"):
        unpack(tar_of(*entries), str(root))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
    assert not [p for p in root.iterdir() if p.is_symlink() and p.name != "d"]


def test_unpack_never_creates_a_name_twice(tmp_path: Path) -> None:
    with pytest.raises(FileExistsError):
        unpack(tar_of(("a", "file", b"1"), ("a", "file", b"2")), str(tmp_path))
    assert (tmp_path / "a").read_bytes() == b"1"


async def test_guest_tar_is_the_stored_tree_made_once(data_dir: Path, tmp_path: Path) -> None:
    bundle = await amake_bundle(data_dir, "tar")
    data = await asyncio.to_thread(guest_tar, bundle)
    assert (bundle.path.parent / CACHE_NAME).read_bytes() == data
    assert await asyncio.to_thread(guest_tar, bundle) == data
    unpack(data, str(tmp_path))
    assert (tmp_path / "lib" / "data.txt").read_text() == "nested-tar\n"
    assert (tmp_path / "link.txt").readlink() == Path("linked.txt")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) for a mount namespace")
def test_install_fills_a_tmpfs_then_makes_it_read_only(tmp_path: Path) -> None:
    tar = tar_of(("h.py", "file", b"print(1)"))
    script = (
        "import os, sys; from faas.agent.function import install, warm_up\n"
        "assert warm_up(sys.argv[1]) and not os.path.ismount(sys.argv[1])\n"
        "assert not os.listdir(sys.argv[1])\n"
        "install(sys.stdin.buffer.read(), target=sys.argv[1])\n"
        "print(open(sys.argv[1] + '/h.py').read())\n"
        "for line in open('/proc/self/mounts'):\n"
        "    if ' ' + sys.argv[1] + ' ' in line: print(line.split()[3])\n"
        "try:\n    open(sys.argv[1] + '/x', 'w')\nexcept OSError as e: print(e.strerror)\n"
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", script,
         str(tmp_path)], input=tar, capture_output=True, check=False,
        env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=30)
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 0, done.stderr
    assert lines[0] == "print(1)" and lines[-1] == "Read-only file system", lines
    options = lines[1].split(",")
    assert {"ro", "nosuid", "nodev"} <= set(options), options
    assert not list(tmp_path.iterdir())  # it was all in the namespace's tmpfs
