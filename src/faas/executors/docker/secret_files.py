"""A docker call's secrets: a per-call folder on a host tmpfs, bound read-only at /run/secrets.

Why a bind of a host tmpfs folder: the Engine API has no way to put bytes on
a container's tmpfs mount before its command runs. A tmpfs mount
(``HostConfig.Tmpfs``) exists only once the container started, and the
archive API (``PUT /containers/{id}/archive``) on a created container writes
into the container's own layer, on the daemon's disk, under where the tmpfs
will later be mounted (tried here: with the read-only root it fails with "no
such directory"; without, the file lands in the overlay ``diff`` folder).
Environment variables and labels are out (``inspect``, ``/proc/*/environ``).

So, per call with secrets (none: no folder, no mount, no cost):

* ``<root>/<instance id>-<random>/`` (0500), one file per secret (0400),
  all owned by the container's numeric ``uid:gid``, written through fds
  opened ``O_EXCL | O_NOFOLLOW``. ``root`` (``/dev/shm/faas-secrets`` by
  default) must lie on a tmpfs, checked in ``/proc/self/mountinfo``: the
  values never reach a disk. ``root`` itself is 0700 and this process's
  own (``/dev/shm`` is world-writable: a folder or link another user put
  there first is refused, never followed);
* the folder is bound read-only (``rprivate``, non-recursive) at
  ``/run/secrets``: inside it is a tmpfs mount, read-only, so the owner
  cannot chmod its way to writing either;
* the executor removes the folder once the container is gone or its
  removal is scheduled, on every path; a folder whose server died is
  removed by the next server's start (``sweep_dead``), like the tier's
  containers.
"""

from __future__ import annotations

import contextlib
import os
import secrets as random
import shutil
import stat
from pathlib import Path
from typing import Any

from faas import instance
from faas.errors import SandboxError
from faas.secrets.names import SECRETS_DIR
from faas.secrets.values import Secret

__all__ = ["DEFAULT_ROOT", "SecretFolders", "numeric_user", "secrets_mount"]

DEFAULT_ROOT = Path("/dev/shm/faas-secrets")  # noqa: S108 (0700, ours, checked per call)


def numeric_user(user: str) -> tuple[int, int] | None:
    """(uid, gid) of a ``uid:gid`` (or ``uid``) container user, None for a user name."""
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        return None
    return int(uid), int(gid or uid)


def secrets_mount(folder: Path) -> dict[str, Any]:
    """The call's secrets folder, bound read-only at ``/run/secrets``."""
    return {"Type": "bind", "Source": str(folder), "Target": SECRETS_DIR, "ReadOnly": True,
            "BindOptions": {"Propagation": "rprivate", "NonRecursive": True}}


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem ``path`` lies on (its longest mount point prefix)."""
    best, found = -1, None
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields, _, rest = line.partition(" - ")
            mount_point = fields.split()[4].replace("\\040", " ")
            inside = path == Path(mount_point) or Path(mount_point) in path.parents
            if inside and len(mount_point) >= best:
                best, found = len(mount_point), rest.split()[0]
    return found


class SecretFolders:
    """Makes, removes and sweeps the per-call secrets folders under one ``root``."""

    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        self.root = root

    def make(self, secrets: tuple[Secret, ...], uid: int, gid: int) -> Path:
        """A fresh folder holding ``secrets`` for the container user ``uid:gid``."""
        self._check_root()
        folder = self.root / f"{instance.instance_id()}-{random.token_hex(8)}"
        try:
            folder.mkdir(0o700)
            for secret in secrets:
                fd = os.open(folder / secret.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
                try:
                    view = memoryview(secret.value)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fchmod(fd, 0o400)
                    os.fchown(fd, uid, gid)
                finally:
                    os.close(fd)
            folder.chmod(0o500)
            os.chown(folder, uid, gid)
        except OSError as exc:
            self.remove(folder)
            raise SandboxError(f"cannot write the call's secrets for the container: "
                               f"{exc.strerror}") from exc
        return folder

    def remove(self, folder: Path) -> None:
        """Remove ``folder`` and what it holds (quietly if it is already gone)."""
        shutil.rmtree(folder, ignore_errors=True)

    def sweep_dead(self) -> int:
        """Remove the folders of servers that no longer run; return how many."""
        try:
            names = [entry.name for entry in self.root.iterdir()]
        except OSError:
            return 0
        dead = [n for n in names if (owner := instance.find_owner(n)) is not None
                and not instance.alive(owner)]
        for name in dead:
            self.remove(self.root / name)
        return len(dead)

    def _check_root(self) -> None:
        with contextlib.suppress(FileExistsError):
            self.root.mkdir(0o700)
        info = self.root.lstat()
        if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid()
                or stat.S_IMODE(info.st_mode) != 0o700):
            raise SandboxError(f"{self.root} is not a 0700 folder of this server's own; "
                               "refusing to put secrets there")
        if filesystem_type(self.root) != "tmpfs":
            raise SandboxError(f"{self.root} is not on a tmpfs; refusing to write secrets "
                               "to a disk")
