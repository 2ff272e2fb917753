"""Per-VM configuration and the server-side maxima it is clamped to.

``VMConfig`` is everything a driver needs to boot one guest; it is derived
from a request's ``Limits`` by ``MicroVMSettings.vm_config``, which clamps
vCPUs and memory to the server's maxima (and memory to the floor the guest
needs to start Python).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from faas.images.build import GuestImages
from faas.images.guest_init import AGENT_VSOCK_PORT
from faas.models import Limits

MIB = 1024 * 1024
# Below this the guest kernel + python3 + agent do not start reliably.
MIN_MEMORY_MIB = 128
MIN_SCRATCH_BYTES = 16 * MIB

# Kernel command line shared by every driver. ``quiet`` keeps the emulated
# UART (slow under TCG) nearly silent but panics still print; ``panic=-1``
# reboots at once on a panic, which the VMM turns into an exit.
BASE_CMDLINE = (
    "console=ttyS0", "quiet", "panic=-1", "root=/dev/vda", "ro", "rootfstype=ext4",
    "init=/sbin/faas-init", "i8042.noaux", "i8042.nomux", "i8042.nopnp", "i8042.dumbkbd",
    "tsc=reliable", "no_timer_check", "cryptomgr.notests", "random.trust_cpu=on",
    "8250.nr_uarts=1", "pci=off",
)


@dataclass(frozen=True, slots=True)
class VMConfig:
    """One guest: the images it boots and its size."""

    images: GuestImages
    vcpus: int = 1
    memory_mib: int = 256
    scratch_bytes: int = 64 * MIB
    vsock: bool = False
    pids: int = 0  # RLIMIT_NPROC of the commands in the guest; 0: none
    extra_cmdline: tuple[str, ...] = ()

    def cmdline(self) -> str:
        parts = list(BASE_CMDLINE)
        if self.vsock:
            parts.append("faas.channel=vsock")
        if self.pids > 0:
            parts.append(f"faas.nproc={self.pids}")
        return " ".join([*parts, *self.extra_cmdline])

    @property
    def agent_port(self) -> int:
        return AGENT_VSOCK_PORT


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class MicroVMSettings:
    """Server-wide knobs of the microVM tier.

    ``boot_timeout_s`` bounds how long a VM may take to say HELLO (on top of
    the request's own deadline, whichever comes first); ``run_dir`` is where
    per-VM folders (sockets, scratch disk, console log) are made. Environment:
    ``FAAS_VM_MAX_VCPUS``, ``FAAS_VM_MAX_MEMORY_MIB``, ``FAAS_POOL_MIN`` (1),
    ``FAAS_POOL_MAX`` (4; 0 disables pools), ``FAAS_POOL_IDLE_S`` (60),
    ``FAAS_POOL_MEMORY_MB`` (1024), ``FAAS_VM_SNAPSHOT`` (1; 0 disables restore),
    ``FAAS_VM_PARALLEL_STARTS`` (CPU count).
    """

    max_vcpus: int = field(default_factory=lambda: _env_int("FAAS_VM_MAX_VCPUS",
                                                            os.cpu_count() or 1))
    max_memory_mib: int = field(default_factory=lambda: _env_int("FAAS_VM_MAX_MEMORY_MIB", 2048))
    max_scratch_bytes: int = 1024 * MIB
    boot_timeout_s: float = 30.0
    cache_dir: Path | None = None
    run_dir: Path | None = None
    # Agent gets (time left - agent_margin_s) so it can kill the command and
    # still send partial output; the VM itself dies at the deadline + kill_grace_s.
    agent_margin_s: float = 0.75
    kill_grace_s: float = 0.25
    # Appended to every guest's kernel command line (debugging: "loglevel=7").
    extra_cmdline: tuple[str, ...] = ()
    # Pre-started single-use VMs, per class (driver, vCPUs, memory, scratch, pids).
    # A class's pool is made on its first invocation (never by constructing the
    # executor, so ``faas doctor`` boots nothing) and then keeps ``pool_min``
    # ready, growing with demand up to ``pool_max``; ``pool_max=0`` turns pooling
    # off. All pools of an executor share ``pool_memory_mib`` of guest memory.
    pool_min: int = field(default_factory=lambda: _env_int("FAAS_POOL_MIN", 1))
    pool_max: int = field(default_factory=lambda: _env_int("FAAS_POOL_MAX", 4))
    pool_idle_s: float = field(default_factory=lambda: float(_env_int("FAAS_POOL_IDLE_S", 60)))
    pool_max_age_s: float = 600.0
    # VMs booting or restoring at once (more wait their turn).
    parallel_starts: int = field(default_factory=lambda: _env_int("FAAS_VM_PARALLEL_STARTS",
                                                                  os.cpu_count() or 1))
    # Pooled VMs run ``true`` once before they wait (see ``MicroVM``'s warm_up).
    pool_warm_up: bool = True
    pool_memory_mib: int = field(default_factory=lambda: _env_int("FAAS_POOL_MEMORY_MB", 1024))
    # QEMU: start VMs from a saved state of a booted guest instead of booting
    # (cached per image set, QEMU version and VM shape; see ``snapshot``).
    snapshots: bool = field(default_factory=lambda: _env_int("FAAS_VM_SNAPSHOT", 1) != 0)

    def vm_config(self, images: GuestImages, limits: Limits, *, vsock: bool = False) -> VMConfig:
        memory = limits.memory_bytes // MIB
        return VMConfig(
            images=images,
            vcpus=max(1, min(limits.vcpus, self.max_vcpus)),
            memory_mib=max(MIN_MEMORY_MIB, min(memory, self.max_memory_mib)),
            scratch_bytes=max(MIN_SCRATCH_BYTES, min(limits.tmp_bytes, self.max_scratch_bytes)),
            vsock=vsock,
            pids=max(limits.pids, 0),
            extra_cmdline=self.extra_cmdline,
        )
