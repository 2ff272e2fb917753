"""What the runtime knows of guest images: the manifest format, its lookup, shared names.

``faas image build`` (``faas.images.build``) writes ``<cache>/build-<key>/``
with a ``manifest.json`` naming every file with its size and sha256. The
executors only read: ``guest_images`` finds the newest complete set (or the
files the operator named instead, ``FC_KERNEL_PATH`` / ``FC_ROOTFS_PATH`` /
``FAAS_INITRD_PATH``, passed in as arguments) and never builds anything; a
missing image is an ``ImageBuildError`` telling the operator to build it.

The agent's vsock port and virtio-serial port name live here because both
the guest's init (baked into the image) and the host's drivers use them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faas.images.common import ImageBuildError

AGENT_VSOCK_PORT = 1024
SERIAL_PORT_NAME = "faas.agent"


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


def load_manifest(path: Path) -> Manifest | None:
    """The manifest at ``path`` if it parses and every file it names exists."""
    try:
        manifest = Manifest.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if all(Path(a.path).is_file() for a in manifest.files.values()):
        return manifest
    return None


def find_manifest(cache_dir: Path | str) -> Manifest | None:
    """The newest complete image set in the cache, without building anything."""
    found = [m for p in Path(cache_dir).glob("build-*/manifest.json")
             if (m := load_manifest(p))]
    return max(found, key=lambda m: m.built_at) if found else None


def guest_images(cache_dir: Path | str, *, kernel: Path | None = None,
                 rootfs: Path | None = None, initrd: Path | None = None) -> GuestImages:
    """The kernel/initrd/rootfs to boot: the built set in ``cache_dir``, or ``kernel`` /
    ``rootfs`` (``FC_KERNEL_PATH`` / ``FC_ROOTFS_PATH``) where given.

    Our initramfs goes with our kernel only: with ``kernel`` given it is
    expected to have the virtio drivers built in, unless ``initrd`` names an
    initramfs. Raises ``ImageBuildError`` when a file is missing.
    """
    manifest: Manifest | None = None
    if kernel is None or rootfs is None:
        manifest = find_manifest(cache_dir)
        if manifest is None:
            raise ImageBuildError("no guest image built yet: run `faas image build`")
    kernel_path = kernel if kernel is not None else _need(manifest).path_of("kernel")
    bzimage: Path | None = None
    if kernel is None and "bzimage" in _need(manifest).files:
        bzimage = _need(manifest).path_of("bzimage")
    rootfs_path = rootfs if rootfs is not None else _need(manifest).path_of("rootfs")
    if initrd is not None:
        initrd_path: Path | None = initrd
    elif kernel is not None:
        initrd_path = None
    else:
        initrd_path = _need(manifest).path_of("initrd")
    for what, path in (("kernel", kernel_path), ("rootfs", rootfs_path),
                       ("initrd", initrd_path), ("bzImage", bzimage)):
        if path is not None and not path.is_file():
            raise ImageBuildError(f"guest {what} {path} does not exist")
    return GuestImages(kernel=kernel_path, rootfs=rootfs_path, initrd=initrd_path,
                       bzimage=bzimage)


def _need(manifest: Manifest | None) -> Manifest:
    if manifest is None:
        raise ImageBuildError("no guest image manifest")
    return manifest
