"""Build (or find) the complete guest image set: kernel, initramfs, root ext4, manifest.

``build_images(cache_dir, force=False)`` is what ``faas image build`` runs; it
returns the ``Manifest`` of ``<cache>/build-<key>/`` where ``key`` hashes
every input (rootfs inputs, kernel package, initramfs script), so a second
call is a few file stats. ``guest_images()`` is what the executors call: the
same, but ``FC_KERNEL_PATH`` / ``FC_ROOTFS_PATH`` (and ``FAAS_INITRD_PATH``)
override the built files when set.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faas.images.common import (
    ImageBuildError,
    build_lock,
    default_cache_dir,
    inputs_hash,
    sha256_file,
)
from faas.images.disk import build_root_ext4
from faas.images.initramfs import build_initramfs, render_init
from faas.images.kernel import ensure_kernel
from faas.images.rootfs import MIRROR, PACKAGES, SUITE, ensure_rootfs_tar, rootfs_key

IMAGE_SET_VERSION = "2"
# Older image sets kept besides the current one: a running server may still
# boot from the previous set for a while after a rebuild.
KEEP_OLD_SETS = 1


@dataclass(frozen=True, slots=True)
class Artifact:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """What ``faas image build`` produced: versions, sizes and sha256 of every file."""

    key: str
    directory: str
    built_at: str
    kernel_release: str
    kernel_package_version: str
    busybox_version: str
    suite: str
    mirror: str
    packages: list[str]
    rootfs_key: str
    files: dict[str, Artifact] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        files = {name: Artifact(**art) for name, art in data.pop("files").items()}
        return cls(**data, files=files)

    def path_of(self, name: str) -> Path:
        return Path(self.files[name].path)


@dataclass(frozen=True, slots=True)
class GuestImages:
    """The files a VMM boots: kernel (ELF vmlinux), optional initramfs, root ext4;
    and the same kernel as a bzImage where we have it (QEMU boots that one: only
    the bzImage's decompressor randomizes the kernel's address, KASLR)."""

    kernel: Path
    rootfs: Path
    initrd: Path | None
    bzimage: Path | None = None


def build_images(cache_dir: Path | str | None = None, force: bool = False) -> Manifest:
    """Return the manifest of the current image set, building what is missing or stale.

    ``force`` rebuilds everything, fetching the current kernel package again.
    Raises ``ImageBuildError``.
    """
    cache = Path(cache_dir).resolve() if cache_dir is not None else default_cache_dir()
    kernel = ensure_kernel(cache, force=force)
    rkey = rootfs_key()
    key = inputs_hash([IMAGE_SET_VERSION, rkey, kernel.release, kernel.package_version,
                       kernel.busybox_version, render_init(kernel)])
    out = cache / f"build-{key}"
    manifest_path = out / "manifest.json"
    if not force and (found := _load_manifest(manifest_path)) is not None:
        return found
    rootfs_tar = ensure_rootfs_tar(cache, force=force)
    with build_lock(cache):
        if not force and (found := _load_manifest(manifest_path)) is not None:
            return found
        out.mkdir(parents=True, exist_ok=True)
        build_initramfs(kernel, out / "initramfs.cpio")
        build_root_ext4(rootfs_tar, out / "rootfs.ext4")
        for src, dst in ((kernel.vmlinux, out / "vmlinux"), (kernel.bzimage, out / "bzImage")):
            dst.unlink(missing_ok=True)
            os.link(src, dst)
        files = {name: _artifact(path) for name, path in [
            ("kernel", out / "vmlinux"), ("bzimage", out / "bzImage"),
            ("initrd", out / "initramfs.cpio"),
            ("rootfs", out / "rootfs.ext4"), ("rootfs_tar", rootfs_tar)]}
        manifest = Manifest(
            key=key, directory=str(out),
            built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            kernel_release=kernel.release, kernel_package_version=kernel.package_version,
            busybox_version=kernel.busybox_version, suite=SUITE, mirror=MIRROR,
            packages=list(PACKAGES), rootfs_key=rkey, files=files,
        )
        tmp = manifest_path.with_suffix(".partial")
        tmp.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        tmp.replace(manifest_path)
        prune(cache, current={out, rootfs_tar}, keep=KEEP_OLD_SETS)
        return manifest


def prune(cache: Path, *, current: set[Path], keep: int = KEEP_OLD_SETS) -> list[Path]:
    """Remove image sets and rootfs tarballs beyond ``current`` and the newest ``keep``
    others; return what was removed.

    Callers hold the build lock. Files a running VMM has open stay readable
    to it (unlinking does not close them).
    """
    removed: list[Path] = []
    for pattern in ("build-*", "rootfs-*.tar"):
        found = sorted((p for p in cache.glob(pattern) if p not in current),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        for old in found[keep:]:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
            removed.append(old)
    return removed


def _artifact(path: Path) -> Artifact:
    return Artifact(str(path), path.stat().st_size, sha256_file(path))


def _load_manifest(path: Path) -> Manifest | None:
    try:
        manifest = Manifest.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if all(Path(a.path).is_file() for a in manifest.files.values()):
        return manifest
    return None


def guest_images(cache_dir: Path | str | None = None, *, build: bool = True) -> GuestImages:
    """The kernel/initrd/rootfs to boot, honouring ``FC_KERNEL_PATH`` and ``FC_ROOTFS_PATH``.

    Our initramfs goes with our kernel only: with ``FC_KERNEL_PATH`` set the
    kernel is expected to have the virtio drivers built in, unless
    ``FAAS_INITRD_PATH`` names an initramfs. With ``build=False`` a missing
    image raises ``ImageBuildError`` instead of being built.
    """
    kernel_env = os.environ.get("FC_KERNEL_PATH")
    rootfs_env = os.environ.get("FC_ROOTFS_PATH")
    initrd_env = os.environ.get("FAAS_INITRD_PATH")
    manifest: Manifest | None = None
    if kernel_env is None or rootfs_env is None:
        if build:
            manifest = build_images(cache_dir)
        else:
            manifest = find_manifest(cache_dir)
            if manifest is None:
                raise ImageBuildError("no guest image built yet: run `faas image build`")
    kernel = Path(kernel_env) if kernel_env else _need(manifest).path_of("kernel")
    bzimage: Path | None = None
    if not kernel_env and "bzimage" in _need(manifest).files:
        bzimage = _need(manifest).path_of("bzimage")
    rootfs = Path(rootfs_env) if rootfs_env else _need(manifest).path_of("rootfs")
    if initrd_env:
        initrd: Path | None = Path(initrd_env)
    elif kernel_env:
        initrd = None
    else:
        initrd = _need(manifest).path_of("initrd")
    for what, path in (("kernel", kernel), ("rootfs", rootfs), ("initrd", initrd),
                       ("bzImage", bzimage)):
        if path is not None and not path.is_file():
            raise ImageBuildError(f"guest {what} {path} does not exist")
    return GuestImages(kernel=kernel, rootfs=rootfs, initrd=initrd, bzimage=bzimage)


def _need(manifest: Manifest | None) -> Manifest:
    if manifest is None:
        raise ImageBuildError("no guest image manifest")
    return manifest


def find_manifest(cache_dir: Path | str | None = None) -> Manifest | None:
    """The newest complete image set in the cache, without building anything."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    found = [m for p in cache.glob("build-*/manifest.json") if (m := _load_manifest(p))]
    return max(found, key=lambda m: m.built_at) if found else None
