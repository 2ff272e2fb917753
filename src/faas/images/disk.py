"""ext4 images: the shared read-only root disk, and the small per-VM scratch disk.

The root image is made with ``mkfs.ext4 -d`` from the rootfs tarball
unpacked into a temporary tree (e2fsprogs 1.47.0 in bookworm cannot read a
tarball directly), without a journal since the guest mounts it read-only.
A scratch disk is an empty sparse ext4 file, made per VM in a few ms.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from faas.images.common import ImageBuildError, remove_quietly, run_tool

_MIB = 1024 * 1024
# Free space left on the (read-only) root image beyond its contents.
_ROOT_HEADROOM = 32 * _MIB


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = Path(dirpath, name).lstat()
            total += max(st.st_size, 4096)
    return total


def build_root_ext4(rootfs_tar: Path, out: Path) -> None:
    """Write an ext4 image of ``rootfs_tar`` to ``out`` (atomically). Needs root for device
    nodes and ownership."""
    partial = out.with_name(out.name + ".partial")
    remove_quietly(partial)
    with tempfile.TemporaryDirectory(prefix="faas-ext4-", dir=out.parent) as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        run_tool(["tar", "-xf", rootfs_tar, "-C", tree, "--numeric-owner"],
                 what="unpacking the rootfs tarball")
        size = (_tree_bytes(tree) * 5 // 4 + _ROOT_HEADROOM + _MIB - 1) // _MIB * _MIB
        try:
            with partial.open("wb") as fh:
                fh.truncate(size)
            run_tool(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-L", "faasroot",
                      "-E", "root_owner=0:0", "-d", tree, partial], what="mkfs.ext4 -d")
            partial.replace(out)
        finally:
            remove_quietly(partial)


def make_scratch_disk(path: Path, size_bytes: int) -> None:
    """Create an empty ext4 filesystem of ``size_bytes`` in the sparse file ``path``.

    Raises ``SandboxError``-compatible ``ImageBuildError`` when mkfs fails.
    """
    size = max(size_bytes, 8 * _MIB) // _MIB * _MIB
    with path.open("wb") as fh:
        fh.truncate(size)
    if shutil.which("mkfs.ext4") is None:
        raise ImageBuildError("mkfs.ext4 is not installed (apt-get install e2fsprogs)")
    run_tool(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0",
              "-E", "lazy_itable_init=1,nodiscard", path], what="mkfs.ext4 (scratch disk)")
