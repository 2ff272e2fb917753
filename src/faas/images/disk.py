"""The shared read-only root disk, an ext4 image.

It is made with ``mkfs.ext4 -d`` from the rootfs tarball unpacked into a
temporary tree (e2fsprogs 1.47.0 in bookworm cannot read a tarball
directly), without a journal since the guest mounts it read-only. (The
per-VM scratch disk is the runtime's: ``faas.executors.microvm.scratch``.)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from faas.images.common import remove_quietly, run_tool

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
