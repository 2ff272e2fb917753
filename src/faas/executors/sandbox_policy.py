"""What a namespace sandbox is made of, as one declarative object.

``SandboxPolicy`` holds every choice the sandbox tier makes about the
sandbox itself: who the command runs as, the one environment the launcher and
bubblewrap get, which host paths appear (read-only) and how big the writable
tmpfs mounts are, the rlimits set before bubblewrap runs, and which defence
layers apply. The executor (``faas.executors.sandbox``) only applies it:
``bwrap_argv`` renders the bubblewrap command line, ``rlimits`` the limits.

The layer switches (``SandboxLayers``) are for tests only: each turns one
layer off so a test can prove another layer holds on its own (e.g.
``RLIMIT_NPROC`` with ``pids.max`` off). The policy is a constructor
argument of the executor and nothing else: no setting, HTTP field or
environment variable reaches it.
"""

from __future__ import annotations

import resource
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from faas.models import Limits
from faas.secrets.names import SECRETS_DIR

MiB = 1024 * 1024
#: Where a deployed function's code appears (read-only) inside the sandbox.
FUNCTION_DIR = "/function"
#: The launcher's and bubblewrap's whole environment, and the base of the command's.
BASE_ENV: Mapping[str, str] = MappingProxyType({
    "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
    "USER": "sandbox"})


def _own_hard_limit(which: int) -> int:
    """This process's hard limit (a switched-off rlimit layer: nothing tighter than ours)."""
    return resource.getrlimit(which)[1]


@dataclass(frozen=True, slots=True)
class SandboxLayers:
    """Which defence layers apply: every one, by default (switches for tests only)."""

    cgroup_memory: bool = True        # memory.max / memory.limit_in_bytes
    cgroup_pids: bool = True          # pids.max
    rlimit_as: bool = True            # RLIMIT_AS (the memory floor)
    rlimit_nproc: bool = True         # RLIMIT_NPROC (the process-count floor)
    cgroup_kill: bool = True          # at the deadline, SIGKILL the whole cgroup
    die_with_parent: bool = True      # bubblewrap --die-with-parent: its pid-1 dies with it


@dataclass(frozen=True, slots=True)
class SandboxPolicy:
    """Every sandbox's shape and defence layers; the defaults are the product's."""

    # Who runs the command: this uid/gid inside (mapped to a host uid of its own).
    uid: int = 1000
    hostname: str = "sandbox"
    base_env: Mapping[str, str] = field(default_factory=lambda: BASE_ENV)
    # The filesystem, all read-only: the host's /usr, the root entries that
    # lead into it (symlinks copied as symlinks), a few /etc files; or a
    # configured root tree instead of all three.
    host_root_entries: tuple[str, ...] = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")
    etc_files: tuple[str, ...] = ("/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime",
                                  "/etc/mime.types")
    # /dev/shm gets the /tmp size, at most this much.
    shm_bytes: int = 64 * MiB
    open_files: int = 1024
    # The address-space rlimit is a floor behind the cgroup; where a cgroup
    # enforces memory, it leaves this factor of room for runtimes that reserve
    # address space.
    address_space_factor_under_cgroup: int = 4
    layers: SandboxLayers = field(default_factory=SandboxLayers)

    def bwrap_argv(self, bwrap: str, *, tmp_bytes: int, rootfs: Path | None,
                   empty_fd: int | None = None) -> list[str]:
        """The invocation-independent part of the bubblewrap command line.

        ``empty_fd`` (an empty file bubblewrap reads; it must be passed to the
        child) masks ``/proc/cmdline``, which would show the host's kernel boot
        arguments.
        """
        argv = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns",
                *(["--die-with-parent"] if self.layers.die_with_parent else []),
                "--new-session", "--cap-drop", "ALL", "--uid", str(self.uid),
                "--gid", str(self.uid), "--hostname", self.hostname]
        if rootfs is not None:
            argv += ["--ro-bind", str(rootfs), "/"]
        else:
            argv += ["--ro-bind", "/usr", "/usr"]
            for name in self.host_root_entries:
                target = Path("/") / name
                if target.is_symlink():
                    argv += ["--symlink", str(target.readlink()), f"/{name}"]
                elif target.is_dir():
                    argv += ["--ro-bind", str(target), f"/{name}"]
            for path in self.etc_files:
                argv += ["--ro-bind-try", path, path]
        argv += ["--proc", "/proc"]
        if empty_fd is not None:
            argv += ["--ro-bind-data", str(empty_fd), "/proc/cmdline"]
        shm_bytes = min(tmp_bytes, self.shm_bytes)
        argv += ["--dev", "/dev",
                 "--size", str(shm_bytes), "--perms", "1777", "--tmpfs", "/dev/shm",
                 "--remount-ro", "/dev",
                 "--size", str(tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp"]
        return argv

    @staticmethod
    def call_argv(function_fd: int | None,
                  secrets: tuple[tuple[str, int], ...] = (), secrets_bytes: int = 0,
                  run_tmpfs: bool = False) -> list[str]:
        """The per-call end of the command line (after ``bwrap_argv``).

        ``function_fd``: an ``O_PATH`` descriptor of the call's unpacked bundle
        (it must be passed to the child), bound read-only at ``/function``.
        The server opens it, so the sandbox's host uid needs no way to the
        folder (the data folder may stay 0700), only to read what is in it.
        ``secrets``: (name, fd to read its value from) per secret, each a
        0400 file in a tmpfs of ``secrets_bytes`` at ``/run/secrets`` (0500),
        made by bubblewrap as the sandbox's uid and then remounted read-only
        (so the owner cannot chmod its way to writing); no secrets, no mount.
        ``run_tmpfs``: a configured root tree has an empty ``/run`` but no
        ``/run/secrets`` (mmdebstrap empties ``/run``): a small read-only
        tmpfs on ``/run`` holds the mount point.
        The root goes read-only only after the mount points are made.
        """
        argv = [] if function_fd is None else ["--ro-bind-fd", str(function_fd), FUNCTION_DIR]
        if secrets and run_tmpfs:
            argv += ["--size", "16384", "--perms", "0755", "--tmpfs", "/run"]
        if secrets:
            argv += ["--size", str(secrets_bytes), "--perms", "0500", "--tmpfs", SECRETS_DIR]
            for name, fd in secrets:
                argv += ["--perms", "0400", "--file", str(fd), f"{SECRETS_DIR}/{name}"]
            argv += ["--remount-ro", SECRETS_DIR, *(["--remount-ro", "/run"] if run_tmpfs else [])]
        return [*argv, "--remount-ro", "/", "--chdir", "/tmp"]

    def rlimits(self, limits: Limits, *, cgroup_memory: bool) -> list[tuple[int, int]]:
        """(resource, value) pairs set before bubblewrap runs: the floor under the cgroup.

        ``cgroup_memory``: whether a cgroup enforces the memory limit too.
        """
        factor = self.address_space_factor_under_cgroup if cgroup_memory else 1
        address_space = limits.memory_bytes * factor
        return [
            (resource.RLIMIT_CPU, limits.cpu_seconds),
            (resource.RLIMIT_FSIZE, limits.file_size_bytes),
            (resource.RLIMIT_NOFILE, self.open_files),
            # + bubblewrap's own processes
            (resource.RLIMIT_NPROC, limits.pids + 4 if self.layers.rlimit_nproc
             else _own_hard_limit(resource.RLIMIT_NPROC)),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_AS, address_space if self.layers.rlimit_as
             else _own_hard_limit(resource.RLIMIT_AS)),
        ]


DEFAULT_POLICY = SandboxPolicy()
