"""Build the executors a server offers, and say why the others are missing.

Each tier is constructed only if it is enabled (``FAAS_EXECUTORS``) and its
availability check passes here; an unusable tier is left out with its reason,
which ``/readyz`` and ``faas doctor`` report and a request naming it gets back
in a 503. Building a tier also sweeps what servers that died left on this host
(cgroups, containers, VM work folders), never what a live server owns.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from faas.config import Settings
from faas.errors import ExecutorUnavailable, FaasError
from faas.executors.base import Availability, Executor
from faas.executors.sandbox import SandboxExecutor
from faas.executors.sandbox import availability as sandbox_availability

if TYPE_CHECKING:
    from faas.executors.docker import DockerExecutor

log = logging.getLogger("faas.executors")
MICROVM_TIERS = ("microvm", "qemu", "firecracker")


def _microvm(name: str, settings: Settings) -> Executor:
    from faas.executors.microvm.config import MicroVMSettings
    from faas.executors.microvm.executor import (
        FirecrackerExecutor,
        MicroVMExecutor,
        QemuExecutor,
    )

    vm_settings = MicroVMSettings(max_vcpus=settings.max_vcpus,
                                  max_memory_mib=settings.max_memory_mb,
                                  run_dir=Path(settings.vm_run_dir) if settings.vm_run_dir
                                  else None)
    kinds: dict[str, type[QemuExecutor | FirecrackerExecutor | MicroVMExecutor]] = {
        "qemu": QemuExecutor, "firecracker": FirecrackerExecutor, "microvm": MicroVMExecutor}
    return kinds[name](vm_settings)


def _sandbox_rootfs(settings: Settings) -> Path | None:
    if not settings.sandbox_rootfs:
        return None
    root = Path(settings.sandbox_rootfs)
    if not (root / "usr").is_dir():
        raise ExecutorUnavailable(f"FAAS_SANDBOX_ROOTFS={root} is not a root filesystem tree")
    return root


def _docker(settings: Settings) -> DockerExecutor:
    from faas.executors.docker import DockerExecutor

    return DockerExecutor(base_url=settings.docker_host, default_image=settings.docker_image,
                          runtime=settings.docker_runtime or None)


async def availability(name: str, settings: Settings | None = None) -> Availability:
    """Probe one tier by name (for ``faas doctor``)."""
    settings = settings or Settings()
    if name == "sandbox":
        return await sandbox_availability()
    if name == "docker":
        from faas.executors import docker

        return await docker.availability(settings.docker_host,
                                         runtime=settings.docker_runtime or None)
    if name in MICROVM_TIERS:
        executor = _microvm(name, settings)
        try:
            state: Availability = await executor.availability()  # type: ignore[attr-defined]
        finally:
            await executor.aclose()
        return state
    return Availability(False, f"unknown executor {name!r}")


async def build_executors(settings: Settings) -> tuple[dict[str, Executor], dict[str, str]]:
    """(usable executors by name, reasons for the enabled ones that are not usable)."""
    usable: dict[str, Executor] = {}
    missing: dict[str, str] = {}
    for name in settings.executors:
        try:
            usable[name] = await _build(name, settings)
        except FaasError as exc:
            missing[name] = str(exc)
            log.warning("executor %s unavailable: %s", name, exc)
    return usable, missing


async def _build(name: str, settings: Settings) -> Executor:
    if name == "sandbox":
        return SandboxExecutor(
            cgroup_root=settings.cgroup_root, uid_base=settings.sandbox_uid_base,
            max_sandboxes=settings.max_concurrency, cache_dir=settings.cache_dir,
            rootfs=_sandbox_rootfs(settings),
        )
    if name == "docker":
        state = await availability("docker", settings)
        if not state.usable:
            raise ExecutorUnavailable(state.reason)
        docker = _docker(settings)
        # Containers of servers that died without cleaning up (never a live one's).
        try:
            await docker.sweep_dead_instances()
        except FaasError as exc:
            log.warning("sweeping leftover containers failed: %s", exc)
        return docker
    if name in MICROVM_TIERS:
        executor = _microvm(name, settings)
        state = await executor.availability()  # type: ignore[attr-defined]
        if not state.usable:
            await executor.aclose()
            raise ExecutorUnavailable(state.reason)
        return executor
    raise ExecutorUnavailable(f"unknown executor {name!r}")
