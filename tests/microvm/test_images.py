"""The guest image builder: cached, verifiable, and honouring FC_KERNEL_PATH / FC_ROOTFS_PATH."""

from __future__ import annotations

import struct
import tarfile
import time
from pathlib import Path

import pytest

from faas.images import rootfs
from faas.images.build import Manifest, build_images, guest_images
from faas.images.common import ImageBuildError, sha256_file
from faas.images.initramfs import _Cpio
from faas.images.rootfs import ensure_rootfs_tar

pytestmark = pytest.mark.microvm


def test_second_build_is_cached_and_fast(image_manifest: Manifest) -> None:
    started = time.monotonic()
    again = build_images()
    assert time.monotonic() - started < 3.0
    assert again.key == image_manifest.key and again.files == image_manifest.files


def test_manifest_records_versions_sizes_and_hashes(image_manifest: Manifest) -> None:
    assert image_manifest.kernel_release.endswith("cloud-amd64")
    assert "python3" in image_manifest.packages
    for name in ("kernel", "bzimage", "initrd", "rootfs", "rootfs_tar"):
        art = image_manifest.files[name]
        assert Path(art.path).stat().st_size == art.size
    initrd = image_manifest.files["initrd"]
    assert sha256_file(Path(initrd.path)) == initrd.sha256
    kernel = Path(image_manifest.files["kernel"].path).read_bytes()[:4]
    assert kernel == b"\x7fELF"
    bzimage = Path(image_manifest.files["bzimage"].path).read_bytes()[0x202:0x206]
    assert bzimage == b"HdrS"  # the Linux boot protocol header
    with Path(image_manifest.files["rootfs"].path).open("rb") as fh:
        fh.seek(1024 + 56)
        assert struct.unpack("<H", fh.read(2))[0] == 0xEF53  # ext4 superblock magic


def test_rootfs_tar_holds_the_agent_and_init(image_manifest: Manifest) -> None:
    tar_path = ensure_rootfs_tar()
    assert str(tar_path) == image_manifest.files["rootfs_tar"].path
    with tarfile.open(tar_path) as tar:
        names = set(tar.getnames())
        init = tar.getmember("./sbin/faas-init")
    assert "./opt/faas/faas/agent/__main__.py" in names
    assert "./opt/faas/faas/errors.py" in names
    assert "./opt/faas/faas/models.py" not in names
    assert "./usr/bin/python3" in names
    assert init.mode & 0o111


def test_agent_import_check_rejects_platform_imports() -> None:
    rootfs._check_imports("ok.py", b"from faas.protocol import Kind\nimport json\n")
    rootfs._check_imports("ok.py", b"from typing import TYPE_CHECKING\n"
                                   b"if TYPE_CHECKING:\n    from faas.models import X\n")
    with pytest.raises(ImageBuildError, match=r"faas\.models"):
        rootfs._check_imports("bad.py", b"from faas.models import InvocationResult\n")
    with pytest.raises(ImageBuildError, match=r"faas\.gateway"):
        rootfs._check_imports("bad.py", b"import faas.gateway.app\n")


def test_the_shipped_agent_passes_the_import_check() -> None:
    names = [name for name, _ in rootfs.agent_sources()]
    assert "faas/agent/server.py" in names and "faas/errors.py" in names


def test_cpio_writer_makes_newc_records() -> None:
    archive = _Cpio()
    archive.add("init", 0o100755, b"#!/bin/sh\n")
    data = archive.finish()
    assert data.startswith(b"070701")
    name_size = int(data[94:102], 16)
    assert data[110:110 + name_size] == b"init\0"
    assert b"TRAILER!!!\0" in data and len(data) % 4 == 0


def test_fc_paths_override_the_built_images(image_manifest: Manifest, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    kernel, disk = tmp_path / "vmlinux", tmp_path / "rootfs.ext4"
    kernel.write_bytes(b"k")
    disk.write_bytes(b"r")
    monkeypatch.setenv("FC_KERNEL_PATH", str(kernel))
    monkeypatch.setenv("FC_ROOTFS_PATH", str(disk))
    found = guest_images(build=False)
    assert (found.kernel, found.rootfs, found.initrd) == (kernel, disk, None)
    monkeypatch.delenv("FC_KERNEL_PATH")
    found = guest_images(build=False)
    assert found.rootfs == disk and found.kernel == image_manifest.path_of("kernel")
    assert found.initrd == image_manifest.path_of("initrd")
    monkeypatch.setenv("FC_ROOTFS_PATH", str(tmp_path / "missing.ext4"))
    with pytest.raises(ImageBuildError, match="does not exist"):
        guest_images(build=False)


def test_microvm_public_names_are_pinned() -> None:
    import faas.executors.microvm as microvm

    assert sorted(microvm.__all__) == [
        "FirecrackerExecutor", "MicroVMExecutor", "MicroVMSettings", "QemuExecutor",
        "firecracker_availability", "microvm_availability", "qemu_availability"]
    assert (microvm.QemuExecutor.name, microvm.FirecrackerExecutor.name,
            microvm.MicroVMExecutor.name) == ("qemu", "firecracker", "microvm")


def test_faas_image_build_cli_accepts_the_build_word(image_manifest: Manifest,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from faas.images.cli import main

    assert main(["build"]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == image_manifest.key
    assert main([]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == image_manifest.key
