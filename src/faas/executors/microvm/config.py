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

from faas.config import Settings, VMSettings, default_image_cache_dir
from faas.config_vars import MIN_VM_MEMORY_MIB
from faas.images.manifest import AGENT_VSOCK_PORT, GuestImages, guest_images
from faas.models import Limits

MIB = 1024 * 1024
# Below this the guest kernel + python3 + agent do not start reliably.
MIN_MEMORY_MIB = MIN_VM_MEMORY_MIB
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


@dataclass(frozen=True, slots=True)
class MicroVMSettings:
    """Server-wide knobs of the microVM tier (``from_settings``: from the server's).

    ``boot_timeout_s`` bounds how long a VM may take to say HELLO (on top of
    the request's own deadline, whichever comes first); ``run_dir`` is where
    per-VM folders (sockets, scratch disk, console log) are made; ``cache_dir``
    holds the guest images (None: the default image cache), snapshots and
    canary verdicts; ``kernel`` / ``rootfs`` / ``initrd`` replace the built
    images; ``vmm``: the VMM binaries, their debug switches and host uids.
    """

    max_vcpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_memory_mib: int = 2048
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
    pool_min: int = 1
    pool_max: int = 4
    pool_idle_s: float = 60.0
    pool_max_age_s: float = 600.0
    # VMs booting or restoring at once (more wait their turn).
    parallel_starts: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Pooled VMs run ``true`` once before they wait (see ``MicroVM``'s warm_up).
    pool_warm_up: bool = True
    pool_memory_mib: int = 1024
    # QEMU: start VMs from a saved state of a booted guest instead of booting
    # (cached per image set, QEMU version and VM shape; see ``snapshot``).
    snapshots: bool = True
    kernel: Path | None = None
    rootfs: Path | None = None
    initrd: Path | None = None
    vmm: VMSettings = field(default_factory=VMSettings)

    @classmethod
    def from_settings(cls, settings: Settings) -> MicroVMSettings:
        """The tier's settings from the server's (``FAAS_VM_*``, ``FAAS_POOL_*``, images)."""
        vm, images = settings.microvm, settings.images
        return cls(max_vcpus=settings.vm_max_vcpus, max_memory_mib=settings.vm_max_memory_mib,
                   cache_dir=images.cache_dir,
                   run_dir=Path(settings.vm_run_dir) if settings.vm_run_dir else None,
                   pool_min=vm.pool_min, pool_max=vm.pool_max, pool_idle_s=vm.pool_idle_s,
                   parallel_starts=vm.parallel_starts, pool_memory_mib=vm.pool_memory_mb,
                   snapshots=vm.snapshots, kernel=images.kernel_path,
                   rootfs=images.rootfs_path, initrd=images.initrd_path, vmm=vm)

    @property
    def image_cache(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else default_image_cache_dir()

    def guest_images(self) -> GuestImages:
        """The images to boot (never built here: ``faas image build`` does that);
        ``ImageBuildError`` when there are none."""
        return guest_images(self.image_cache, kernel=self.kernel, rootfs=self.rootfs,
                            initrd=self.initrd)

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
