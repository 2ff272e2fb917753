"""Build (or find) the complete guest image set: kernel, initramfs, root ext4, manifest.

``build_images(cache_dir, force=False)`` is what ``faas image build`` runs; it
returns the ``Manifest`` of ``<cache>/build-<key>/`` where ``key`` hashes
every input (rootfs inputs, kernel package, initramfs script), so a second
call is a few file stats. The runtime never imports this module: executors
find the built set with ``faas.images.manifest`` (the manifest format lives
there); ``guest_images()`` here builds it first, for tests and benchmarks.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from faas.config import DEFAULT_DEBIAN_MIRROR, default_image_cache_dir
from faas.images.common import build_lock, inputs_hash, sha256_file
from faas.images.disk import build_root_ext4
from faas.images.initramfs import build_initramfs, render_init
from faas.images.kernel import ensure_kernel
from faas.images.manifest import Artifact, GuestImages, Manifest, load_manifest
from faas.images.manifest import guest_images as lookup_guest_images
from faas.images.rootfs import PACKAGES, SUITE, ensure_rootfs_tar, rootfs_key

IMAGE_SET_VERSION = "2"
# Older image sets kept besides the current one: a running server may still
# boot from the previous set for a while after a rebuild.
KEEP_OLD_SETS = 1


def build_images(cache_dir: Path | str | None = None, force: bool = False, *,
                 mirror: str = DEFAULT_DEBIAN_MIRROR) -> Manifest:
    """Return the manifest of the current image set, building what is missing or stale.

    ``force`` rebuilds everything, fetching the current kernel package again;
    ``mirror``: the Debian mirror the root filesystem comes from.
    Raises ``ImageBuildError``.
    """
    cache = Path(cache_dir).resolve() if cache_dir is not None else default_image_cache_dir()
    kernel = ensure_kernel(cache, force=force)
    rkey = rootfs_key(mirror)
    key = inputs_hash([IMAGE_SET_VERSION, rkey, kernel.release, kernel.package_version,
                       kernel.busybox_version, render_init(kernel)])
    out = cache / f"build-{key}"
    manifest_path = out / "manifest.json"
    if not force and (found := load_manifest(manifest_path)) is not None:
        return found
    rootfs_tar = ensure_rootfs_tar(cache, force=force, mirror=mirror)
    with build_lock(cache):
        if not force and (found := load_manifest(manifest_path)) is not None:
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
            busybox_version=kernel.busybox_version, suite=SUITE, mirror=mirror,
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


def guest_images(cache_dir: Path | str | None = None, *, build: bool = True,
                 kernel: Path | None = None, rootfs: Path | None = None,
                 initrd: Path | None = None) -> GuestImages:
    """``manifest.guest_images``, building the image set first when it is needed (tests,
    benchmarks); with ``build=False`` a missing image raises ``ImageBuildError``."""
    cache = Path(cache_dir) if cache_dir is not None else default_image_cache_dir()
    if build and (kernel is None or rootfs is None):
        build_images(cache)
    return lookup_guest_images(cache, kernel=kernel, rootfs=rootfs, initrd=initrd)
