"""The Firecracker driver: ``--config-file``, hybrid vsock, the jailer when available.

Firecracker needs working hardware virtualization, so the driver is only
offered after a canary boot of our own guest reached the agent's HELLO. On a
host where it cannot (here: ``/dev/kvm`` is a PVM hypervisor; the guest dies
with ``KVM_EXIT_INTERNAL_ERROR``) every request gets a fast
``ExecutorUnavailable`` carrying the canary's reason.

The guest's agent listens on vsock port ``AGENT_VSOCK_PORT``; the host
reaches it through Firecracker's unix socket with the ``CONNECT <port>``
handshake (see ``channel.HybridVsockChannel``).

With the jailer (found next to the binary, or ``FC_JAILER_PATH``, and we are
root) Firecracker runs chrooted in ``<workdir>/jail`` as the host uid its
``MicroVM`` leased (``JAIL_UID``, ``nobody``, only when none is given); the
images are hard-linked into the chroot (copied if on another filesystem).
``FAAS_FC_JAILER=0`` turns it off.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from faas.errors import ExecutorUnavailable
from faas.executors.base import Availability
from faas.executors.microvm.canary import (
    CanaryResult,
    boot_probe,
    cached_canary,
    canary_key,
    file_identity,
)
from faas.executors.microvm.channel import Channel, HybridVsockChannel
from faas.executors.microvm.config import MicroVMSettings, VMConfig
from faas.executors.microvm.fcbinary import FirecrackerBinaries, resolve_binaries
from faas.executors.microvm.uids import host_uids
from faas.images.common import ImageBuildError
from faas.images.manifest import GuestImages

CANARY_TIMEOUT_S = 10.0
GUEST_CID = 3
FC_CMDLINE = ("reboot=k",)
JAIL_UID = 65534
_VSOCK_NAME = "v.sock"


def firecracker_config(config: VMConfig, *, kernel: str, rootfs: str, scratch: str,
                       initrd: str | None, uds_path: str) -> dict[str, Any]:
    """The ``--config-file`` document for one VM (paths as Firecracker will see them)."""
    boot: dict[str, Any] = {"kernel_image_path": kernel,
                            "boot_args": f"{config.cmdline()} {' '.join(FC_CMDLINE)}"}
    if initrd is not None:
        boot["initrd_path"] = initrd
    return {
        "boot-source": boot,
        "drives": [
            {"drive_id": "rootfs", "path_on_host": rootfs, "is_root_device": False,
             "is_read_only": True},
            {"drive_id": "scratch", "path_on_host": scratch, "is_root_device": False,
             "is_read_only": False},
        ],
        "machine-config": {"vcpu_count": config.vcpus, "mem_size_mib": config.memory_mib,
                           "smt": False},
        "vsock": {"guest_cid": GUEST_CID, "uds_path": uds_path},
        "entropy": {},
    }


class FirecrackerDriver:
    name = "firecracker"
    vsock = True
    accel = "kvm"

    def __init__(self, binaries: FirecrackerBinaries, *, use_jailer: bool | None = None,
                 jailer_allowed: bool = True) -> None:
        """``use_jailer`` None: where there is one, we are root and ``jailer_allowed``
        (``FAAS_FC_JAILER``, a debugging switch)."""
        self.binaries = binaries
        if use_jailer is None:
            use_jailer = binaries.jailer is not None and os.geteuid() == 0 and jailer_allowed
        self.use_jailer = use_jailer

    def _root(self, workdir: Path) -> Path:
        """Where Firecracker's own view of ``/`` is: the jail's root or the work folder."""
        if self.use_jailer:
            return workdir / "jail" / "firecracker" / jail_id(workdir) / "root"
        return workdir

    def channel(self, config: VMConfig, workdir: Path) -> Channel:
        return HybridVsockChannel(self._root(workdir) / _VSOCK_NAME, config.agent_port)

    def command(self, config: VMConfig, workdir: Path, uid: int | None = None) -> list[str]:
        """``uid``: the jailer drops Firecracker to it (else ``JAIL_UID``)."""
        images = config.images
        if not self.use_jailer:
            doc = firecracker_config(
                config, kernel=str(images.kernel), rootfs=str(images.rootfs),
                scratch=str(workdir / "scratch.ext4"),
                initrd=str(images.initrd) if images.initrd else None,
                uds_path=str(workdir / _VSOCK_NAME))
            (workdir / "config.json").write_text(json.dumps(doc))
            return [str(self.binaries.firecracker), "--no-api", "--config-file",
                    str(workdir / "config.json"), "--level", "Warning"]
        return self._jailed_command(config, workdir, JAIL_UID if uid is None else uid)

    def _jailed_command(self, config: VMConfig, workdir: Path, uid: int) -> list[str]:
        images, root = config.images, self._root(workdir)
        root.mkdir(parents=True)
        for src, name in ((images.kernel, "vmlinux"), (images.rootfs, "rootfs.ext4"),
                          (images.initrd, "initrd.cpio")):
            if src is not None:
                _link_or_copy(src, root / name)
        (workdir / "scratch.ext4").replace(root / "scratch.ext4")
        os.chown(root / "scratch.ext4", uid, uid)
        doc = firecracker_config(config, kernel="vmlinux", rootfs="rootfs.ext4",
                                 scratch="scratch.ext4",
                                 initrd="initrd.cpio" if images.initrd else None,
                                 uds_path=_VSOCK_NAME)
        (root / "config.json").write_text(json.dumps(doc))
        jailer = self.binaries.jailer
        if jailer is None:
            raise ExecutorUnavailable("firecracker: the jailer was requested but not found")
        return [str(jailer), "--id", jail_id(workdir), "--exec-file",
                str(self.binaries.firecracker), "--uid", str(uid), "--gid", str(uid),
                "--chroot-base-dir", str(workdir / "jail"), "--",
                "--no-api", "--config-file", "config.json", "--level", "Warning"]


def jail_id(workdir: Path) -> str:
    """The jailer's ``--id`` for a VM: its work folder's name in the only characters the
    jailer accepts (letters, digits, ``-``; at most 64). ``mkdtemp`` names may hold ``_``,
    which the jailer refuses; the id needs no uniqueness beyond the VM's own chroot base."""
    return re.sub(r"[^A-Za-z0-9-]", "-", workdir.name)[:64]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


async def canary(binaries: FirecrackerBinaries, images: GuestImages, cache_dir: Path | None,
                 settings: MicroVMSettings | None = None) -> CanaryResult:
    """Boot our guest once with Firecracker; cached per binary, images and host
    (``cache_dir`` None: in memory only)."""
    vmm = (settings or MicroVMSettings()).vmm
    jailer_allowed = vmm.fc_jailer
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return CanaryResult(False, "/dev/kvm is missing or not accessible")
    driver = FirecrackerDriver(binaries, jailer_allowed=jailer_allowed)
    key = canary_key("firecracker", file_identity(binaries.firecracker),
                     str(driver.use_jailer), file_identity(images.kernel),
                     file_identity(images.rootfs), file_identity(images.initrd))

    async def probe() -> CanaryResult:
        ok, reason, ms = await boot_probe(driver, VMConfig(images=images, vsock=True),
                                          timeout_s=CANARY_TIMEOUT_S, uids=host_uids(vmm),
                                          runas=vmm.qemu_runas)
        return CanaryResult(ok, reason, ms)

    return await cached_canary(key, cache_dir, probe)


def _binaries(settings: MicroVMSettings) -> FirecrackerBinaries:
    return resolve_binaries(settings.image_cache, binary=settings.vmm.fc_binary,
                            jailer=settings.vmm.fc_jailer_path)


async def ready_driver(settings: MicroVMSettings, images: GuestImages) -> FirecrackerDriver:
    """A driver whose canary passed, or ``ExecutorUnavailable`` with the reason."""
    binaries = _binaries(settings)
    verdict = await canary(binaries, images, settings.image_cache, settings)
    if not verdict.ok:
        raise ExecutorUnavailable(f"firecracker cannot boot a guest on this host: "
                                  f"{verdict.reason}")
    return FirecrackerDriver(binaries, jailer_allowed=settings.vmm.fc_jailer)


async def probe(settings: MicroVMSettings) -> Availability:
    """Whether Firecracker boots our guest here (its canary), and if not, why."""
    try:
        binaries = _binaries(settings)
    except ExecutorUnavailable as exc:
        return Availability(False, str(exc))
    try:
        images = settings.guest_images()
    except ImageBuildError as exc:
        return Availability(False, f"guest image unusable: {exc}")
    verdict = await canary(binaries, images, settings.image_cache, settings)
    if verdict.ok:
        return Availability(True, f"Firecracker ({binaries.source}) booted the guest in "
                                  f"{verdict.boot_ms:.0f} ms")
    return Availability(False, f"Firecracker ({binaries.source}) canary boot failed: "
                               f"{verdict.reason}")
