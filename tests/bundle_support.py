"""Deployed-function bundles for the tier tests: stored as the server stores them.

``make_bundle(data_dir, tag)`` packs a folder holding ``handler.py`` (which
echoes stdin under its ``tag``), a nested file and a relative symbolic link,
and stores it with ``BundleStore`` (data folder 0700, as in production), so
every tier mounts exactly what an upload becomes. ``data_folder()`` makes a
data folder (0711) the sandbox tier's uids can pass through. ``HOSTILE`` is a shell
script each tier runs inside: every way of changing /function must fail.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from faas.bundles import BundleStore, pack_folder
from faas.models import FunctionBundle

HANDLER = """import sys
data = sys.stdin.read()
nested = open("/function/lib/data.txt").read().strip()
linked = open("/function/link.txt").read().strip()
print(f"{TAG}:{data}:{nested}:{linked}")
"""

#: Prints one line per attempt that SUCCEEDED (so the expected output is empty).
HOSTILE = (
    "cd /function || exit 9; "
    "echo x > /function/x 2>/dev/null && echo wrote; "
    "echo x >> /function/handler.py 2>/dev/null && echo appended; "
    "chmod 777 /function/handler.py 2>/dev/null && echo chmodded; "
    "chmod 777 /function 2>/dev/null && echo chmodded-dir; "
    "rm -f /function/handler.py 2>/dev/null; [ -e /function/handler.py ] || echo removed; "
    "mkdir /function/d 2>/dev/null && echo mkdir; "
    "ln -s /tmp /function/l 2>/dev/null && echo linked; "
    "mount -o remount,rw /function 2>/dev/null && echo remounted; "
    "touch /function/x 2>/dev/null && echo touched; "
    "exit 0"
)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def data_folder() -> Path:
    """A data folder the sandbox uids can pass through (0711 up to /), unlike ``tmp_path``."""
    folder = Path(tempfile.mkdtemp(prefix="faas-bundles-"))
    folder.chmod(0o711)
    return folder


def make_bundle(data_dir: Path, tag: str, *, padding: int = 0) -> FunctionBundle:
    """Store a bundle whose handler answers ``<tag>:<stdin>:nested-<tag>:linked-<tag>``."""
    source = data_dir / f"src-{tag}"
    (source / "lib").mkdir(parents=True)
    (source / "handler.py").write_text(HANDLER.replace("{TAG}", tag))
    (source / "lib" / "data.txt").write_text(f"nested-{tag}\n")
    (source / "linked.txt").write_text(f"linked-{tag}\n")
    (source / "link.txt").symlink_to("linked.txt")
    if padding:
        (source / "padding.bin").write_bytes(bytes(range(256)) * (padding // 256))
    packed = io.BytesIO()
    pack_folder(source, packed)
    store = BundleStore(data_dir)
    info = asyncio.run(store.put(_chunks(packed.getvalue())))
    return FunctionBundle(info.sha256, store.path(info.sha256), info.unpacked_bytes)


async def amake_bundle(data_dir: Path, tag: str, *, padding: int = 0) -> FunctionBundle:
    """``make_bundle`` from inside an event loop."""
    return await asyncio.to_thread(make_bundle, data_dir, tag, padding=padding)


def expected(tag: str, stdin: str) -> str:
    return f"{tag}:{stdin}:nested-{tag}:linked-{tag}\n"


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A tar.gz upload holding ``files`` (name -> content), as a client sends one."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
