"""Show a call's secrets at ``/run/secrets``: one read-only file each, for the commands' user.

Runs as root in the guest, before the command:

* the image's ``/run`` is empty (mmdebstrap clears it) on a read-only root:
  if ``/run/secrets`` is missing, a small tmpfs goes on ``/run`` first,
  holding only that folder, then read-only (calls without secrets pay nothing);
* a fresh tmpfs at ``/run/secrets`` (``nosuid,nodev,noexec``), capped at
  what the files need (each rounded up to a page) with an inode cap, its
  root 0500 and owned by the commands' uid/gid;
* one file per secret, 0400, owned by that uid/gid, created
  ``O_EXCL | O_NOFOLLOW`` (the host checked the names; the protocol checks
  them again: one safe path component each);
* then the tmpfs is remounted read-only, so the owner can neither write nor
  chmod its way to writing.

The values come with the request (never at boot, never on the kernel command
line or in an environment). Anything refused raises ``SecretsInstallError``
and the request is answered with that error, without running the command.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

SECRETS_DIR = "/run/secrets"
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_FLAGS = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
_PAGE = 4096


class SecretsInstallError(Exception):
    """The secrets could not be shown at /run/secrets (the message says why)."""


def install(secrets: tuple[tuple[str, bytes], ...], uid: int, gid: int,
            target: str = SECRETS_DIR) -> None:
    """Mount a tmpfs at ``target`` holding ``secrets`` for ``uid:gid``; seal it read-only."""
    folder = Path(target)
    if not folder.is_dir():
        _mount(str(folder.parent), "size=16k,nr_inodes=8,mode=0755", _FLAGS)
        try:
            folder.mkdir(0o755)
        finally:
            _mount(str(folder.parent), "", _MS_REMOUNT | _MS_RDONLY | _FLAGS)
    size = _PAGE + sum(max(_PAGE, -(-len(value) // _PAGE) * _PAGE) for _, value in secrets)
    _mount(target, f"size={size},nr_inodes={len(secrets) + 8},mode=0500,uid={uid},gid={gid}",
           _FLAGS)
    try:
        for name, value in secrets:
            fd = os.open(f"{target}/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
            try:
                view = memoryview(value)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, 0o400)
                os.fchown(fd, uid, gid)
            finally:
                os.close(fd)
    except OSError as exc:
        raise SecretsInstallError(f"the call's secrets could not be written: "
                                  f"{exc.strerror}") from exc
    finally:
        _mount(target, "", _MS_REMOUNT | _MS_RDONLY | _FLAGS)


def _mount(target: str, data: str, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"secrets", target.encode(), b"tmpfs", flags,
                  data.encode() if data else None) != 0:
        errno = ctypes.get_errno()
        raise SecretsInstallError(f"cannot mount the tmpfs at {target}: {os.strerror(errno)}")
