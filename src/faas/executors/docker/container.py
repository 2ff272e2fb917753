"""What a container of the docker tier is: the Engine API create body, hardening included.

Containers run with no network, a read-only root, a size-capped tmpfs
``/tmp``, all capabilities dropped, ``no-new-privileges``, a seccomp profile
(``seccomp_profile``; or one the operator gives), memory (no swap), pids and
CPU limits, rlimits, a private IPC namespace, logging off (output never lands
on the host disk), a non-root user, the call's code read-only at
``/function`` (``function_mount``) if it has a bundle, and its secrets
folder read-only at ``/run/secrets`` (``secret_files``) if it has secrets.
``ContainerPolicy`` holds the executor's settings; ``create_body`` adds one
invocation's command, payload limits and labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faas.executors.docker.labels import container_labels
from faas.executors.docker.secret_files import secrets_mount
from faas.models import ExecutionSpec

__all__ = ["DEFAULT_USER", "FUNCTION_DIR", "GUEST_TMP", "MASKED_PATHS", "ContainerPolicy",
           "function_mount"]

DEFAULT_USER = "65534:65534"  # nobody:nogroup
FUNCTION_DIR = "/function"
GUEST_TMP = "/tmp"  # noqa: S108 (the container's own tmpfs, not the host's /tmp)
_SHM_MAX = 64 * 1024 * 1024
# Setting MaskedPaths replaces Docker's defaults (moby oci/defaults.go): keep them
# all and add /proc/cmdline, which shows the host's kernel boot arguments.
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/cmdline",
)


def function_mount(folder: Path) -> dict[str, Any]:
    """The deployed function's code, bound read-only at ``/function``.

    Only the folder itself (``NonRecursive``: no mount below it comes along),
    and nothing propagates either way (``rprivate``). The Engine API has no
    field for ``nosuid,nodev`` on a bind, so the files themselves are the
    guard (the store writes 0644/0755 only: no device nodes, no setuid bits)
    and ``no-new-privileges`` holds anyway. The daemon (root) resolves the
    path, so the data folder may stay private; the files are world-readable,
    so ``nobody`` reads them.
    """
    return {"Type": "bind", "Source": str(folder), "Target": FUNCTION_DIR, "ReadOnly": True,
            "BindOptions": {"Propagation": "rprivate", "NonRecursive": True}}


@dataclass(frozen=True, slots=True)
class ContainerPolicy:
    """The executor-wide part of every container: who runs, under which runtime and options.

    ``security_opt`` is passed as given (the executor puts ``no-new-privileges``
    and ``seccomp=<profile>`` there); ``owner`` is the executor's label token.
    """

    user: str
    init: bool
    runtime: str | None
    security_opt: tuple[str, ...]
    owner: str

    def create_body(self, spec: ExecutionSpec, image: str,
                    secrets: Path | None = None) -> dict[str, Any]:
        """The create body; ``secrets``: the call's host secrets folder, if it has one."""
        limits = spec.limits
        cpu_s = max(1, limits.cpu_seconds)
        # Docker reads 0 as "unlimited" for pids and tmpfs size: never pass 0.
        pids = max(1, limits.pids)
        tmp_bytes = max(4096, limits.tmp_bytes)
        host_config: dict[str, Any] = {
            "NetworkMode": "none",
            "ReadonlyRootfs": True,
            "Tmpfs": {GUEST_TMP: f"rw,nosuid,nodev,size={tmp_bytes},mode=1777"},
            "CapDrop": ["ALL"],
            "SecurityOpt": list(self.security_opt),
            "Memory": limits.memory_bytes,
            "MemorySwap": limits.memory_bytes,  # equal to Memory: no swap at all
            "PidsLimit": pids,
            "NanoCpus": max(1, limits.vcpus) * 1_000_000_000,
            "Ulimits": [
                {"Name": "cpu", "Soft": cpu_s, "Hard": cpu_s},
                {"Name": "fsize", "Soft": limits.file_size_bytes, "Hard": limits.file_size_bytes},
                {"Name": "core", "Soft": 0, "Hard": 0},
                {"Name": "nofile", "Soft": 1024, "Hard": 1024},
            ],
            "IpcMode": "private",
            "MaskedPaths": list(MASKED_PATHS),
            "ShmSize": min(tmp_bytes, _SHM_MAX),
            "LogConfig": {"Type": "none", "Config": {}},
            "Init": self.init,
            "Privileged": False,
            "AutoRemove": False,
        }
        if self.runtime:
            host_config["Runtime"] = self.runtime
        mounts = [] if spec.bundle is None else [function_mount(spec.bundle.path)]
        if secrets is not None:
            mounts.append(secrets_mount(secrets))
        if mounts:
            host_config["Mounts"] = mounts
        return {
            "Image": image,
            "Entrypoint": [""],  # the request's command runs as given, whatever the image says
            "Cmd": list(spec.command),
            "Env": [f"{key}={value}" for key, value in spec.env.items()],
            "User": self.user,
            "WorkingDir": GUEST_TMP,
            "AttachStdin": True,
            "AttachStdout": True,
            "AttachStderr": True,
            "OpenStdin": True,
            "StdinOnce": True,
            "Tty": False,
            "Labels": container_labels(self.owner, spec),
            "HostConfig": host_config,
        }
