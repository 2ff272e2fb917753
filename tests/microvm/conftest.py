"""Fixtures of the microVM tier: the guest image (built once, cached), executors, leak checks.

Every VM these tests boot lives in one session ``run_dir``, so the leak check
is exact: after each test module the folder is empty and no VMM process
mentions it on its command line.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from microvm_support import assert_no_vm_leaks

from faas.config import ImageSettings, Settings
from faas.executors.microvm import MicroVMSettings, QemuExecutor
from faas.images.build import build_images
from faas.images.manifest import GuestImages, Manifest

try:
    from helpers import record_tier
except ImportError:  # run on its own
    def record_tier(name: str, state: str) -> None:
        return None


@pytest.fixture(scope="session")
def server_settings() -> Settings:
    """What a server started with this environment reads (``FAAS_IMAGE_CACHE``...)."""
    return Settings.from_env()


@pytest.fixture(scope="session")
def image_settings(server_settings: Settings) -> ImageSettings:
    return server_settings.images


@pytest.fixture(scope="session")
def image_manifest(image_settings: ImageSettings) -> Manifest:
    """Build (first run: about 40 s) or find (later runs: instant) the guest images."""
    tools = ("qemu-system-x86_64", "mmdebstrap", "lz4", "mkfs.ext4", "dpkg-deb", "apt-get")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        reason = f"{', '.join(missing)} not installed (scripts/setup.sh installs them)"
        record_tier("microvm (QEMU)", f"SKIPPED: {reason}")
        pytest.skip(reason)
    started = time.monotonic()
    manifest = build_images(image_settings.cache_dir, mirror=image_settings.debian_mirror)
    print(f"\nguest images ready in {time.monotonic() - started:.1f}s: {manifest.directory}")
    record_tier("microvm (QEMU)", "ran")
    return manifest


@pytest.fixture(scope="session")
def vm_settings(server_settings: Settings) -> MicroVMSettings:
    """The microVM settings a server started with this environment would use."""
    return MicroVMSettings.from_settings(server_settings)


@pytest.fixture(scope="session")
def images(image_manifest: Manifest, vm_settings: MicroVMSettings) -> GuestImages:
    return vm_settings.guest_images()


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    # Short path: unix socket paths are limited to 108 bytes.
    path = Path(f"/tmp/faas-test-vms-{os.getpid()}")
    path.mkdir(exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(vm_settings: MicroVMSettings, run_dir: Path) -> MicroVMSettings:
    """Cold boots only (no pool, no snapshot): what most tests exercise."""
    return dataclasses.replace(vm_settings, run_dir=run_dir, boot_timeout_s=60.0, pool_max=0,
                               snapshots=False)


@pytest.fixture
async def qemu(settings: MicroVMSettings, images: GuestImages) -> AsyncIterator[QemuExecutor]:
    executor = QemuExecutor(settings, images)
    yield executor
    await executor.aclose()


@pytest.fixture(scope="module", autouse=True)
def no_vm_leaks_after_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """Leak check after each test group (module)."""
    yield
    if "run_dir" in request.fixturenames or _session_run_dir_exists():
        assert_no_vm_leaks(Path(f"/tmp/faas-test-vms-{os.getpid()}"))


def _session_run_dir_exists() -> bool:
    return Path(f"/tmp/faas-test-vms-{os.getpid()}").is_dir()


@pytest.fixture
def no_vm_leaks(run_dir: Path) -> Iterator[None]:
    yield
    assert_no_vm_leaks(run_dir)
