"""The QEMU command line, checked without booting anything."""

from __future__ import annotations

import os
from pathlib import Path

from faas.executors.microvm.channel import UnixListenChannel, VsockChannel
from faas.executors.microvm.config import MicroVMSettings, VMConfig
from faas.executors.microvm.qemu import QemuDriver, host_tsc_khz
from faas.images.build import GuestImages
from faas.models import Limits

IMAGES = GuestImages(Path("/img/vmlinux"), Path("/img/root,fs.ext4"), Path("/img/initrd"))


def _opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_tcg_command_line(tmp_path: Path) -> None:
    driver = QemuDriver("/usr/bin/qemu-system-x86_64", "tcg")
    config = VMConfig(images=IMAGES, vcpus=2, memory_mib=384)
    argv = driver.command(config, tmp_path, 300005)
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    assert "rtc=on" in _opt(argv, "-M")[0] and "-no-reboot" in argv and "-nodefaults" in argv
    assert _opt(argv, "-accel")[0].startswith("tcg") and _opt(argv, "-cpu") == ["max"]
    assert _opt(argv, "-m") == ["384M"] and _opt(argv, "-smp") == ["2"]
    drives = _opt(argv, "-drive")
    assert drives[0] == "id=root,file=/img/root,,fs.ext4,format=raw,if=none,readonly=on"
    assert drives[1].startswith(f"id=scratch,file={tmp_path}/scratch.ext4,")
    assert "readonly" not in drives[1]
    devices = _opt(argv, "-device")
    assert "virtio-rng-device" in devices
    assert "virtserialport,chardev=agent,name=faas.agent" in devices
    assert not any("net" in d for d in devices)
    assert _opt(argv, "-initrd") == ["/img/initrd"]
    cmdline = _opt(argv, "-append")[0].split()
    assert "panic=-1" in cmdline and "quiet" in cmdline
    if (khz := host_tsc_khz()) is not None:
        assert f"tsc_early_khz={khz}" in cmdline
    assert _opt(argv, "-runas") == (["300005:300005"] if os.geteuid() == 0 else [])
    sandbox = _opt(argv, "-sandbox")[0]
    assert sandbox.startswith("on,") and "spawn=deny" in sandbox
    assert ("elevateprivileges=allow" in sandbox) == (os.geteuid() == 0)
    assert "nokaslr" not in cmdline
    without_uid = driver.command(config, tmp_path)
    assert "-runas" not in without_uid and "elevateprivileges=deny" in _opt(without_uid,
                                                                          "-sandbox")[0]
    assert isinstance(driver.channel(config, tmp_path), UnixListenChannel)


def test_kvm_and_vsock_command_line(tmp_path: Path) -> None:
    driver = QemuDriver("qemu-system-x86_64", "kvm", vsock=True)
    config = VMConfig(images=IMAGES, vsock=True)
    channel = driver.channel(config, tmp_path)
    assert isinstance(channel, VsockChannel) and channel.port == 1024
    argv = driver.command(config, tmp_path)
    assert _opt(argv, "-accel") == ["kvm"] and _opt(argv, "-cpu") == ["host"]
    assert f"vhost-vsock-device,guest-cid={channel.cid}" in _opt(argv, "-device")
    assert "-chardev" not in argv
    cmdline = _opt(argv, "-append")[0].split()
    assert "faas.channel=vsock" in cmdline
    assert not any(arg.startswith("tsc_early_khz") for arg in cmdline)


def test_limits_are_clamped_to_the_server_maxima() -> None:
    settings = MicroVMSettings(max_vcpus=2, max_memory_mib=1024)
    big = settings.vm_config(IMAGES, Limits(vcpus=8, memory_bytes=8 << 30, tmp_bytes=8 << 30))
    assert (big.vcpus, big.memory_mib, big.scratch_bytes) == (2, 1024, 1024 << 20)
    small = settings.vm_config(IMAGES, Limits(vcpus=1, memory_bytes=16 << 20))
    assert small.memory_mib == 128  # the floor the guest needs to start


def test_vmm_uids_are_never_shared_between_servers_of_one_host(tmp_path: Path) -> None:
    """Two servers (two pools on one lock folder) never hold the same uid at once;
    a released uid (or one of a server that died: the kernel drops its flock) is free."""
    import pytest

    from faas.errors import SandboxError
    from faas.executors.microvm.uids import HostUidPool

    first = HostUidPool(300_000, 3, lock_dir=tmp_path / "locks")
    second = HostUidPool(300_000, 3, lock_dir=tmp_path / "locks")
    a, b = first.lease(), second.lease()
    assert {a, b} == {300_000, 300_001}
    c = second.lease()
    assert c == 300_002
    with pytest.raises(SandboxError, match="no free VMM uid"):
        first.lease()
    first.release(a)
    assert second.lease() == a
    for uid in (a, b, c):
        second.release(uid)
    assert sorted(first.lease() for _ in range(3)) == [300_000, 300_001, 300_002]
