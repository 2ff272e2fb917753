"""The guest kernel: Debian's cloud kernel, unpacked to an uncompressed ELF ``vmlinux``.

Debian's ``linux-image-cloud-amd64`` has ext4 and PVH built in, so QEMU
``-M microvm`` and Firecracker can both boot its ELF image directly, but the
virtio transport, block, console, rng and vsock drivers are modules: the
handful the guest needs are copied next to the kernel for the initramfs.

The bzImage carries its payload LZ4-compressed (legacy frame, magic
``02 21 4c 18``); the ``lz4`` tool unpacks it (it exits non-zero on the
trailing bytes after the stream, so success is judged by the ELF magic).

Cached as ``kernel-<release>/`` with a ``kernel.json`` recording package
versions; ``force`` fetches the current package again.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from faas.images.common import ImageBuildError, build_lock, run_tool

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
# Load order matters: each module after the ones it depends on.
GUEST_MODULES = (
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_mmio.ko",
    "drivers/block/virtio_blk.ko",
    "drivers/char/virtio_console.ko",
    "drivers/char/hw_random/virtio-rng.ko",
    "net/vmw_vsock/vsock.ko",
    "net/vmw_vsock/vmw_vsock_virtio_transport_common.ko",
    "net/vmw_vsock/vmw_vsock_virtio_transport.ko",
)
_LZ4_LEGACY_MAGIC = bytes.fromhex("02214c18")
_ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True, slots=True)
class KernelBuild:
    """A kernel unpacked in the cache: ``vmlinux``, its modules in load order, busybox."""

    directory: Path
    release: str
    package_version: str
    busybox_version: str

    @property
    def vmlinux(self) -> Path:
        return self.directory / "vmlinux"

    @property
    def bzimage(self) -> Path:
        """The compressed kernel as packaged: its decompressor applies KASLR, which a
        VMM loading ``vmlinux`` directly (PVH entry) skips."""
        return self.directory / "bzImage"

    @property
    def busybox(self) -> Path:
        return self.directory / "busybox"

    @property
    def modules(self) -> list[Path]:
        return [self.directory / "modules" / Path(m).name for m in GUEST_MODULES]


def ensure_kernel(cache_dir: Path, *, force: bool = False) -> KernelBuild:
    """Return the cached kernel, fetching and unpacking it first if absent (or ``force``)."""
    pointer = cache_dir / "kernel-current.json"
    if not force and (found := _load(cache_dir, pointer)) is not None:
        return found
    with build_lock(cache_dir):
        if not force and (found := _load(cache_dir, pointer)) is not None:
            return found
        build = _fetch(cache_dir)
        tmp = pointer.with_suffix(".tmp")
        tmp.write_text(json.dumps({**asdict(build), "directory": build.directory.name}))
        tmp.replace(pointer)
        return build


def _load(cache_dir: Path, pointer: Path) -> KernelBuild | None:
    try:
        data = json.loads(pointer.read_text())
        build = KernelBuild(cache_dir / data["directory"], data["release"],
                            data["package_version"], data["busybox_version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    files = [build.vmlinux, build.bzimage, build.busybox, *build.modules]
    return build if all(f.is_file() for f in files) else None


def _fetch(cache_dir: Path) -> KernelBuild:
    with tempfile.TemporaryDirectory(prefix="faas-kernel-") as tmp_name:
        tmp = Path(tmp_name)
        meta = _download(KERNEL_META_PACKAGE, tmp)
        depends = run_tool(["dpkg-deb", "-f", meta, "Depends"], what="dpkg-deb").strip()
        match = re.match(r"(linux-image-(\d\S*))\s*\(=\s*([^)]+)\)", depends)
        if match is None:
            raise ImageBuildError(f"unexpected {KERNEL_META_PACKAGE} dependency: {depends!r}")
        package, release, version = match.group(1), match.group(2), match.group(3)
        image_deb = _download(package, tmp)
        busybox_deb = _download(BUSYBOX_PACKAGE, tmp)
        busybox_version = run_tool(["dpkg-deb", "-f", busybox_deb, "Version"],
                                   what="dpkg-deb").strip()
        tree = tmp / "tree"
        run_tool(["dpkg-deb", "-x", image_deb, tree], what="dpkg-deb -x")
        run_tool(["dpkg-deb", "-x", busybox_deb, tree], what="dpkg-deb -x")

        out = cache_dir / f"kernel-{release}"
        staging = cache_dir / f".kernel-{release}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "modules").mkdir(parents=True)
        extract_vmlinux(tree / "boot" / f"vmlinuz-{release}", staging / "vmlinux")
        shutil.copy2(tree / "boot" / f"vmlinuz-{release}", staging / "bzImage")
        shutil.copy2(tree / "bin" / "busybox", staging / "busybox")
        module_root = tree / "lib" / "modules" / release / "kernel"
        for module in GUEST_MODULES:
            shutil.copy2(module_root / module, staging / "modules" / Path(module).name)
        shutil.copy2(tree / "boot" / f"config-{release}", staging / "config")
        shutil.rmtree(out, ignore_errors=True)
        staging.replace(out)
        return KernelBuild(out, release, version, busybox_version)


def _download(package: str, where: Path) -> Path:
    run_tool(["apt-get", "download", "-q", package], what=f"apt-get download {package}",
             cwd=where)
    debs = sorted(where.glob(f"{package}_*.deb"))
    if not debs:
        raise ImageBuildError(f"apt-get download {package} produced no .deb")
    return debs[-1]


def extract_vmlinux(bzimage: Path, out: Path) -> None:
    """Write the uncompressed ELF kernel inside ``bzimage`` to ``out``."""
    data = bzimage.read_bytes()
    start = data.find(_LZ4_LEGACY_MAGIC)
    if start < 0:
        raise ImageBuildError(f"{bzimage}: no LZ4 stream (only LZ4-packed kernels supported)")
    try:
        proc = subprocess.run(["lz4", "-d", "-c"], input=data[start:], capture_output=True,
                              check=False)
    except OSError as exc:
        raise ImageBuildError(f"cannot run lz4 (apt-get install lz4): {exc}") from exc
    if not proc.stdout.startswith(_ELF_MAGIC) or len(proc.stdout) < 1 << 20:
        tail = proc.stderr.decode("utf-8", "replace")[-500:]
        raise ImageBuildError(f"{bzimage}: LZ4 payload is not an ELF kernel: {tail}")
    out.write_bytes(proc.stdout)
