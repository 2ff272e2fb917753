"""Show the deployed function's code at ``/function``: unpack the host's tar, then seal it.

The host validated the bundle when it was uploaded; this unpacks it again as
defence in depth, trusting nothing in the tar:

* a fresh tmpfs at ``/function`` (``nosuid,nodev``), capped at what the tar
  can hold (each file rounded up to a page), with an inode cap;
* only folders, regular files and symbolic links; every name relative,
  without ``.``/``..``/empty parts, under a folder this very unpacking made
  (so never through a link); a link's target relative and inside the tree;
  files 0755 if any execute bit was set, else 0644, owned by root;
  nothing is created twice (``O_EXCL | O_NOFOLLOW``);
* then the tmpfs is remounted read-only (``MS_RDONLY``): the command runs
  as ``nobody`` without capabilities, so it can neither write nor remount.

Runs as root in the guest (``mount(2)``); anything refused raises
``FunctionInstallError`` and the request is answered with that error.
"""

from __future__ import annotations

import ctypes
import io
import os
import posixpath
import tarfile
from pathlib import Path

FUNCTION_DIR = "/function"
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT = 1, 2, 4, 32
_MNT_DETACH = 2
_PAGE = 4096
_TAR_BLOCK = 512


class FunctionInstallError(Exception):
    """The bundle could not be shown at /function (the message says why)."""


def install(tar: bytes, target: str = FUNCTION_DIR) -> None:
    """Mount a tmpfs at ``target``, unpack ``tar`` into it, remount it read-only."""
    # A tar entry takes at least one 512-byte header; in the tmpfs at most
    # its data rounded up to a page: so 8 x the tar bounds it, plus a margin.
    entries = len(tar) // _TAR_BLOCK + 16
    _mount(target, f"size={8 * len(tar) + 1024 * 1024},nr_inodes={entries},mode=0755",
           _MS_NOSUID | _MS_NODEV)
    try:
        unpack(tar, target)
    except (OSError, ValueError, tarfile.TarError) as exc:
        raise FunctionInstallError(f"the function's code could not be unpacked: {exc}") from exc
    finally:
        _mount(target, "", _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


def warm_up(target: str = FUNCTION_DIR) -> bool:
    """Run the whole install path once on a tiny tree, then unmount it: a pooled VM
    (warmed before it waits) then meets its real bundle with that code translated
    (QEMU TCG) and imported. Leaves ``target`` as it was; False if not possible."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        folder = tarfile.TarInfo("d")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        data = tarfile.TarInfo("d/f")
        data.size = 1
        tar.addfile(data, io.BytesIO(b"x"))
        link = tarfile.TarInfo("l")
        link.type, link.linkname = tarfile.SYMTYPE, "d/f"
        tar.addfile(link)
    try:
        install(out.getvalue(), target)
    except FunctionInstallError:
        return False
    finally:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.umount2(target.encode(), _MNT_DETACH)
    return True


def unpack(tar: bytes, root: str) -> None:
    """Unpack ``tar`` (uncompressed) into the empty folder ``root``, refusing anything odd."""
    folders = {""}
    links: list[tuple[str, str]] = []
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as archive:
        for member in archive:
            name = _checked_name(member.name)
            parent = posixpath.dirname(name)
            if parent not in folders:
                raise ValueError(f"{name!r} is not under a folder of the bundle")
            path = Path(root, name)
            if member.isdir():
                path.mkdir(0o755)
                path.chmod(0o755)  # past the umask
                folders.add(name)
            elif member.isfile():
                source = archive.extractfile(member)
                if source is None:
                    raise ValueError(f"{name!r} has no data")
                mode = 0o755 if member.mode & 0o111 else 0o644
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, mode)
                with os.fdopen(fd, "wb") as out:
                    os.fchmod(fd, mode)  # past the umask
                    out.write(source.read())
            elif member.issym():
                links.append((name, member.linkname))
            else:
                raise ValueError(f"{name!r} is not a folder, file or symbolic link")
    for name, target in links:  # last: every folder a target may pass through exists
        if not _stays_inside(posixpath.dirname(name), target, folders):
            raise ValueError(f"link {name!r} points outside the bundle")
        Path(root, name).symlink_to(target)


def _stays_inside(parent: str, target: str, folders: set[str]) -> bool:
    """Whether ``target``, followed from folder ``parent``, ends inside the tree and
    passes only through real folders of it (never another link), so this lexical
    walk is what the kernel will do."""
    if not target or target.startswith("/"):
        return False
    parts = parent.split("/") if parent else []
    steps = [p for p in target.split("/") if p not in ("", ".")]
    for i, step in enumerate(steps):
        if step == "..":
            if not parts:
                return False
            parts.pop()
        else:
            parts.append(step)
            if i < len(steps) - 1 and "/".join(parts) not in folders:
                return False
    return True


def _checked_name(name: str) -> str:
    name = name.removesuffix("/")
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) \
            or "\0" in name:
        raise ValueError(f"bad entry name {name!r}")
    return name


def _mount(target: str, data: str, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"function", target.encode(), b"tmpfs", flags,
                  data.encode() if data else None) != 0:
        errno = ctypes.get_errno()
        raise FunctionInstallError(f"cannot mount the tmpfs at {target}: {os.strerror(errno)}")
