"""A tiny initramfs: static busybox, the virtio modules, and an ``/init`` that mounts the root.

Written directly as an uncompressed ``newc`` cpio archive (no ``cpio`` tool
needed; uncompressed unpacks fastest under TCG). ``/init`` loads the modules
in order, mounts ``/dev/vda`` read-only, ``nosuid`` and ``nodev`` on ``/newroot``, and proc, sys and
the scratch disk ``/dev/vdb`` (else a tmpfs) under it with static busybox
(cheaper than the rootfs's dynamically linked tools under TCG), moves
``/dev`` there and ``switch_root``s into ``/sbin/faas-init``. If anything fails it prints
the reason on the console and reboots, so the host sees the VM exit instead
of a hang.
"""

from __future__ import annotations

import io
import stat
from pathlib import Path

from faas.images.kernel import KernelBuild

INIT_TEMPLATE = """#!/bin/busybox sh
B=/bin/busybox
$B mount -t devtmpfs -o mode=0755 dev /dev
fail() {{ echo "faas-initramfs: $*" > /dev/console; $B sleep 0.2; $B reboot -f; }}
for m in {modules}; do
    $B insmod /lib/modules/$m || fail "insmod $m"
done
n=0
while [ ! -b /dev/vda ]; do
    n=$((n + 1)); [ $n -gt 200 ] && fail "no root disk /dev/vda"
    $B usleep 10000
done
$B mount -t ext4 -o ro,nosuid,nodev /dev/vda /newroot || fail "cannot mount /dev/vda"
$B mount -t proc -o nosuid,nodev,noexec proc /newroot/proc || fail "cannot mount /proc"
$B mount -t sysfs -o nosuid,nodev,noexec sys /newroot/sys || fail "cannot mount /sys"
if [ -b /dev/vdb ] && $B mount -t ext4 -o nosuid,nodev /dev/vdb /newroot/tmp; then
    $B chmod 1777 /newroot/tmp
else
    $B mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m tmp /newroot/tmp || fail "no /tmp"
fi
$B mount --move /dev /newroot/dev || fail "cannot move /dev"
exec $B switch_root /newroot /sbin/faas-init
"""


class _Cpio:
    """Minimal writer for the ``newc`` format the kernel unpacks."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data),
                  0, 0, rdev[0], rdev[1], len(encoded), 0]
        self.ino += 1
        self.out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        self.out.write(encoded)
        self._pad()
        self.out.write(data)
        self._pad()

    def _pad(self) -> None:
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return self.out.getvalue()


def render_init(kernel: KernelBuild) -> str:
    return INIT_TEMPLATE.format(modules=" ".join(m.name for m in kernel.modules))


def build_initramfs(kernel: KernelBuild, out: Path) -> None:
    """Write the initramfs for ``kernel`` to ``out`` (atomically)."""
    archive = _Cpio()
    for d in ("dev", "proc", "sys", "newroot", "bin", "lib", "lib/modules"):
        archive.add(d, stat.S_IFDIR | 0o755)
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    archive.add("bin/busybox", stat.S_IFREG | 0o755, kernel.busybox.read_bytes())
    for module in kernel.modules:
        archive.add(f"lib/modules/{module.name}", stat.S_IFREG | 0o644, module.read_bytes())
    archive.add("init", stat.S_IFREG | 0o755, render_init(kernel).encode())
    tmp = out.with_name(out.name + ".partial")
    tmp.write_bytes(archive.finish())
    tmp.replace(out)
