"""Host uids for VMMs: one per running VM, never shared, across servers on one host."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from faas.errors import SandboxError


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


# Host uids of VMMs: FAAS_VMM_UID_BASE + slot, one per running VM. Distinct from
# the containers' 65534 and the namespace sandboxes' 200000 + slot.
VMM_UID_BASE = _env_int("FAAS_VMM_UID_BASE", 300_000)
VMM_UIDS = _env_int("FAAS_VMM_UIDS", 1024)


class HostUidPool:
    """Host uids for VMMs: each running VM holds its own, never shared.

    A uid is leased when the VM is spawned and returned only once its VMM is
    reaped, so a dying VMM and a new one never share a uid. The uid owns no
    file on the host: the VMM opens its disks, kernel and sockets as root
    before it drops to it. Servers on one host share the range: a lease also
    holds an exclusive ``flock`` on ``<lock_dir>/<uid>`` (released by the
    kernel when the server dies), so two live servers never hand out the same
    uid; where ``lock_dir`` cannot be made the leases are this process's only.
    """

    def __init__(self, base: int = VMM_UID_BASE, size: int = VMM_UIDS, *,
                 lock_dir: Path | None = None) -> None:
        self.base, self.size = base, size
        self.lock_dir = lock_dir if lock_dir is not None else Path(
            os.environ.get("FAAS_VMM_UID_LOCK_DIR", "/run/faas-vmm-uids"))
        self._free = list(range(base + size - 1, base - 1, -1))
        self._locks: dict[int, int] = {}

    def lease(self) -> int:
        """A uid no other VM of any live server on this host holds; ``SandboxError`` if none."""
        locking = self._lock_dir_ready()
        for i in range(len(self._free) - 1, -1, -1):
            uid = self._free[i]
            if locking:
                fd = self._try_lock(uid)
                if fd is None:
                    continue
                self._locks[uid] = fd
            del self._free[i]
            return uid
        raise SandboxError(f"no free VMM uid (all {self.size} in use on this host)")

    def release(self, uid: int) -> None:
        fd = self._locks.pop(uid, None)
        if fd is not None:
            os.close(fd)  # drops the flock
        if self.base <= uid < self.base + self.size and uid not in self._free:
            self._free.append(uid)

    def _lock_dir_ready(self) -> bool:
        try:
            self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            return False
        return True

    def _try_lock(self, uid: int) -> int | None:
        try:
            fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd


default_uids = HostUidPool()


def vmm_drops_privileges() -> bool:
    """Whether VMMs get a host uid of their own: only a root server can give one."""
    return os.geteuid() == 0 and os.environ.get("FAAS_QEMU_RUNAS", "1") != "0"
