"""A bundle's tree as the uncompressed tar the guest agent unpacks at /function.

Made once per sha256 and cached next to the bundle (``<bundle>/../guest.tar``,
written to a temporary name and renamed into place, so readers see all or
nothing); later calls only read it. The walk never follows links: folders,
regular files and symbolic links only, in sorted order, owner 0, modes as the
store wrote them. Blocking: call ``guest_tar`` in a thread.
"""

from __future__ import annotations

import io
import os
import secrets
import stat
import tarfile
from pathlib import Path

from faas.errors import SandboxError
from faas.models import FunctionBundle
from faas.protocol import MAX_BUNDLE_TAR

CACHE_NAME = "guest.tar"


def guest_tar(bundle: FunctionBundle) -> bytes:
    """The tar of ``bundle``'s tree (cached). Raises ``SandboxError`` if it is missing
    or larger than the protocol carries."""
    cached = bundle.path.parent / CACHE_NAME
    try:
        data = cached.read_bytes()
    except FileNotFoundError:
        data = _make(bundle.path)
        partial = cached.with_name(f".{CACHE_NAME}.{secrets.token_hex(4)}")
        try:
            partial.write_bytes(data)
            partial.replace(cached)
        except OSError:  # a read-only store: serve the tar without caching it
            partial.unlink(missing_ok=True)
    if len(data) > MAX_BUNDLE_TAR:
        raise SandboxError(f"the function's code is {len(data)} bytes as a tar, over the "
                           f"{MAX_BUNDLE_TAR} a microVM request carries")
    return data


def _make(root: Path) -> bytes:
    if not root.is_dir():
        raise SandboxError(f"the function's code bundle {root.parent.name[:12]} is not available")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(_walk(root)):
            name = path.relative_to(root).as_posix()
            st = path.lstat()
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if st.st_mode & 0o111 else 0o644
            if stat.S_ISDIR(st.st_mode):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, str(path.readlink())
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                with path.open("rb") as f:
                    tar.addfile(info, f)
    return out.getvalue()


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        found += [Path(folder, name) for name in (*dirs, *files)]
    return found
