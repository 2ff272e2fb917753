"""The QEMU ``-M microvm`` driver.

KVM is used only when a canary boot proves it runs our guest (on hosts whose
``/dev/kvm`` is a PVM hypervisor QEMU+KVM dies at once); otherwise TCG. The
host-agent channel is vsock when ``/dev/vhost-vsock`` exists, else a
virtio-serial port whose chardev connects to a unix socket the host listens
on. QEMU runs with ``-no-reboot`` (the guest's reset is an exit), its
seccomp sandbox on, and, when started as root, drops to the host uid its
``MicroVM`` leased for it (``-runas UID:GID``, which QEMU 7.2 accepts: one uid
per running VM from ``FAAS_VMM_UID_BASE``, never the containers' ``nobody``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
from pathlib import Path

from faas.executors.base import Availability
from faas.executors.microvm.canary import (
    CanaryResult,
    boot_probe,
    cached_canary,
    canary_key,
    file_identity,
)
from faas.executors.microvm.channel import Channel, UnixListenChannel, VsockChannel
from faas.executors.microvm.config import VMConfig
from faas.images.build import GuestImages, guest_images
from faas.images.common import ImageBuildError, default_cache_dir
from faas.images.guest_init import SERIAL_PORT_NAME

KVM_CANARY_TIMEOUT_S = 15.0
_cids = itertools.count(3 + (os.getpid() % 100_000) * 1000)


def qemu_binary() -> str | None:
    return shutil.which(os.environ.get("FAAS_QEMU_BINARY", "qemu-system-x86_64"))


def host_tsc_khz() -> int | None:
    """The host's TSC rate in kHz, or None if unknown.

    ``tsc_freq_khz`` where the kernel exports it; else ``cpu MHz`` from
    ``/proc/cpuinfo``, which is the TSC rate when there is no cpufreq driver
    (VMs); with cpufreq it is the current clock, so the nominal "@ x.xxGHz" of
    the model name is preferred when present.
    """
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/sys/devices/system/cpu/cpu0/tsc_freq_khz").read_text())
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    mhz = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", cpuinfo, re.M)
    nominal = re.search(r"^model name\s*:.*@\s*([0-9.]+)GHz", cpuinfo, re.M)
    if nominal and Path("/sys/devices/system/cpu/cpu0/cpufreq").exists():
        return int(float(nominal.group(1)) * 1_000_000)
    return int(float(mhz.group(1)) * 1000) if mhz else None


def vhost_vsock_available() -> bool:
    return os.access("/dev/vhost-vsock", os.R_OK | os.W_OK)


class QemuDriver:
    """Builds the QEMU command line for one VM; ``accel`` is ``"kvm"`` or ``"tcg"``."""

    name = "qemu"

    def __init__(self, binary: str, accel: str = "tcg", *, vsock: bool = False) -> None:
        self.binary = binary
        self.accel = accel
        self.vsock = vsock
        self._cid: int | None = None

    def cmdline(self, config: VMConfig) -> str:
        """Under TCG the kernel's PIT calibration of the TSC fails now and then (the
        emulated PIT and the host TSC drift apart) and the boot then hangs in the
        APIC timer calibration; TCG's guest TSC is the host's, so tell it the rate."""
        extra = ""
        if self.accel != "kvm" and (khz := host_tsc_khz()):
            extra = f" tsc_early_khz={khz}"
        return config.cmdline() + extra

    @staticmethod
    def kernel(config: VMConfig) -> Path:
        """The bzImage when there is one: its decompressor randomizes where the kernel
        lives (KASLR); a vmlinux loaded through the PVH entry always sits at its link
        address. ``FAAS_QEMU_KASLR=0`` boots the vmlinux (a little faster under TCG)."""
        images = config.images
        if images.bzimage is not None and os.environ.get("FAAS_QEMU_KASLR", "1") != "0":
            return images.bzimage
        return images.kernel

    def channel(self, config: VMConfig, workdir: Path) -> Channel:
        if self.vsock:
            self._cid = next(_cids) % (2**31)
            return VsockChannel(self._cid, config.agent_port)
        return UnixListenChannel(workdir / "agent.sock")

    def command(self, config: VMConfig, workdir: Path, uid: int | None = None) -> list[str]:
        """``uid``: QEMU drops to it (and gid ``uid``) once its files are open; only
        when we are root (and ``FAAS_QEMU_RUNAS`` is not 0)."""
        images = config.images
        runas = uid is not None and self._runas()
        cpu = ["-cpu", "host"] if self.accel == "kvm" else ["-cpu", "max"]
        accel = "kvm" if self.accel == "kvm" else "tcg,tb-size=256"
        argv = [
            self.binary, "-M", "microvm,rtc=on,acpi=on,pcie=off,graphics=off",
            "-accel", accel, *cpu,
            "-m", f"{config.memory_mib}M", "-smp", str(config.vcpus),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-serial", f"file:{workdir / 'console.log'}",
            "-kernel", str(self.kernel(config)), "-append", self.cmdline(config),
            "-drive", f"id=root,file={_escape(images.rootfs)},format=raw,if=none,readonly=on",
            "-device", "virtio-blk-device,drive=root",
            "-drive", f"id=scratch,file={_escape(workdir / 'scratch.ext4')},format=raw,if=none,"
                      "cache=unsafe",
            "-device", "virtio-blk-device,drive=scratch",
            "-device", "virtio-rng-device",
            *self._sandbox(runas),
        ]
        if images.initrd is not None:
            argv += ["-initrd", str(images.initrd)]
        if self.vsock:
            argv += ["-device", f"vhost-vsock-device,guest-cid={self._cid}"]
        else:
            argv += ["-chardev", f"socket,id=agent,path={_escape(workdir / 'agent.sock')}",
                     "-device", "virtio-serial-device,max_ports=2",
                     "-device", f"virtserialport,chardev=agent,name={SERIAL_PORT_NAME}"]
        if runas:
            argv += ["-runas", f"{uid}:{uid}"]
        return argv

    @staticmethod
    def _runas() -> bool:
        return os.geteuid() == 0 and os.environ.get("FAAS_QEMU_RUNAS", "1") != "0"

    @staticmethod
    def _sandbox(runas: bool) -> list[str]:
        """QEMU's seccomp filter; it must allow the one setuid that ``-runas`` makes."""
        if os.environ.get("FAAS_QEMU_SANDBOX", "1") == "0":
            return []
        elevate = "allow" if runas else "deny"
        return ["-sandbox", f"on,obsolete=deny,elevateprivileges={elevate},spawn=deny,"
                            "resourcecontrol=deny"]


def _escape(path: Path) -> str:
    """QEMU option values separate on commas; a literal comma is doubled."""
    return str(path).replace(",", ",,")


async def kvm_canary(binary: str, images: GuestImages,
                     cache_dir: Path | None = None) -> CanaryResult:
    """Boot the guest once under QEMU+KVM; cached per binary, kernel and host."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return CanaryResult(False, "/dev/kvm is missing or not accessible")
    key = canary_key("qemu-kvm", file_identity(binary), file_identity(images.kernel),
                     file_identity(images.bzimage),
                     file_identity(images.rootfs), file_identity(images.initrd))

    async def probe() -> CanaryResult:
        config = VMConfig(images=images, memory_mib=256)
        ok, reason, ms = await boot_probe(QemuDriver(binary, "kvm", vsock=False), config,
                                          timeout_s=KVM_CANARY_TIMEOUT_S)
        return CanaryResult(ok, reason, ms)

    return await cached_canary(key, cache_dir if cache_dir else default_cache_dir(), probe)


async def availability(cache_dir: Path | None = None) -> Availability:
    """Whether the QEMU driver can run here, and with which accelerator."""
    binary = qemu_binary()
    if binary is None:
        return Availability(False, "qemu-system-x86_64 not found (apt-get install "
                                   "qemu-system-x86)")
    try:
        images = guest_images(cache_dir, build=False)
    except ImageBuildError as exc:
        return Availability(False, f"guest image unusable: {exc}")
    kvm = await kvm_canary(binary, images, cache_dir)
    channel = "vsock" if vhost_vsock_available() else "virtio-serial on a unix socket"
    if kvm.ok:
        return Availability(True, f"QEMU microvm with KVM ({kvm.boot_ms:.0f} ms to agent); "
                                  f"channel: {channel}")
    return Availability(True, f"QEMU microvm with TCG (KVM canary failed: {kvm.reason}); "
                              f"channel: {channel}")
