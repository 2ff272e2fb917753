"""A function folder, less its excluded entries, packed as a bundle.

``faas.bundles.pack_folder`` packs a whole folder deterministically; the
entries to pack are first copied into a scratch folder (files, folders and
symbolic links as they are), so the bundle holds the same bytes whether or
not something was excluded, and the packer's checks apply unchanged.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path

from faas.bundles import BundleInfo, BundleLimits, pack_folder
from faas.bundles.names import rejected
from faas.client.manifest import DEFAULT_EXCLUDE
from faas.errors import ValidationError


def is_excluded(relative: str, patterns: Iterable[str]) -> bool:
    """Whether the entry at ``relative`` (``a/b.txt``) matches one of the globs.

    A glob without ``/`` is matched against the entry's own name, one with
    ``/`` against its whole path (a leading ``/`` anchors nothing more).
    """
    name = relative.rpartition("/")[2]
    for pattern in patterns:
        if "/" in pattern:
            if fnmatchcase(relative, pattern.strip("/")):
                return True
        elif fnmatchcase(name, pattern):
            return True
    return False


def pack_function_folder(folder: Path, exclude: Iterable[str] = (),
                         limits: BundleLimits | None = None) -> tuple[bytes, BundleInfo]:
    """The tar.gz bundle of ``folder`` without ``DEFAULT_EXCLUDE`` and ``exclude``."""
    if not folder.is_dir():
        raise ValidationError(f"{folder} is not a folder")
    patterns = (*DEFAULT_EXCLUDE, *exclude)
    with tempfile.TemporaryDirectory(prefix="faas-bundle-") as scratch:
        root = Path(scratch) / "function"
        root.mkdir()
        _copy_tree(folder, root, "", patterns)
        out = io.BytesIO()
        info = pack_folder(root, out, limits)
    return out.getvalue(), info


def _copy_tree(source: Path, target: Path, prefix: str, patterns: tuple[str, ...]) -> None:
    with os.scandir(source) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        relative = f"{prefix}{entry.name}"
        if is_excluded(relative, patterns):
            continue
        st = entry.stat(follow_symlinks=False)
        destination = target / entry.name
        if stat.S_ISLNK(st.st_mode):
            destination.symlink_to(Path(entry.path).readlink())
        elif stat.S_ISDIR(st.st_mode):
            destination.mkdir()
            _copy_tree(Path(entry.path), destination, relative + "/", patterns)
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(entry.path, destination, follow_symlinks=False)
            destination.chmod(stat.S_IMODE(st.st_mode) & 0o777)
        else:
            raise rejected(relative, "is not a file, a folder or a symbolic link")
