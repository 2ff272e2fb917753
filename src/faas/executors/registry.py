"""The isolation tiers a server can offer: a list of ``Tier`` objects, and one loop.

Each tier says whether it can run here (``probe``, what ``faas doctor``
prints) and builds its executor (``build``, raising ``ExecutorUnavailable``
with the reason when it cannot). A tier is built only if it is enabled
(``FAAS_EXECUTORS``); an unusable one is left out with its reason, which
``/readyz`` and ``faas doctor`` report and a request naming it gets back in
a 503. Building a tier also sweeps what servers that died left on this host
(cgroups, containers, VM work folders), never what a live server owns.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from faas.config import Settings
from faas.errors import ExecutorUnavailable, FaasError
from faas.executors.base import Availability, Executor
from faas.executors.sandbox import SandboxExecutor
from faas.executors.sandbox import availability as sandbox_availability

log = logging.getLogger("faas.executors")


class Tier(Protocol):
    name: str

    async def probe(self, settings: Settings) -> Availability: ...

    async def build(self, settings: Settings) -> Executor:
        """The tier's executor; ``ExecutorUnavailable`` (or another ``FaasError``) if none."""
        ...


class SandboxTier:
    name = "sandbox"

    async def probe(self, settings: Settings) -> Availability:
        return await sandbox_availability()

    async def build(self, settings: Settings) -> Executor:
        return SandboxExecutor(
            cgroup_root=settings.cgroup_root, uid_base=settings.sandbox_uid_base,
            max_sandboxes=settings.max_concurrency, cache_dir=settings.cache_dir,
            rootfs=_sandbox_rootfs(settings),
        )


def _sandbox_rootfs(settings: Settings) -> Path | None:
    if not settings.sandbox_rootfs:
        return None
    root = Path(settings.sandbox_rootfs)
    if not (root / "usr").is_dir():
        raise ExecutorUnavailable(f"FAAS_SANDBOX_ROOTFS={root} is not a root filesystem tree")
    return root


class DockerTier:
    """The Engine API client is imported only when this tier is probed or built."""

    name = "docker"

    async def probe(self, settings: Settings) -> Availability:
        from faas.executors import docker

        return await docker.availability(settings.docker_host,
                                         runtime=settings.docker_runtime or None)

    async def build(self, settings: Settings) -> Executor:
        from faas.executors.docker import DockerExecutor

        state = await self.probe(settings)
        if not state.usable:
            raise ExecutorUnavailable(state.reason)
        docker = DockerExecutor(base_url=settings.docker_host,
                                default_image=settings.docker_image,
                                runtime=settings.docker_runtime or None)
        # Containers of servers that died without cleaning up (never a live one's).
        try:
            await docker.sweep_dead_instances()
        except FaasError as exc:
            log.warning("sweeping leftover containers failed: %s", exc)
        return docker


class VMTier:
    """A microVM tier: ``microvm`` (the best VMM that works), ``qemu`` or ``firecracker``."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def probe(self, settings: Settings) -> Availability:
        from faas.executors.microvm.config import MicroVMSettings
        from faas.executors.microvm.drivers import CHOICES

        return await CHOICES[self.name].probe(MicroVMSettings.from_settings(settings))

    async def build(self, settings: Settings) -> Executor:
        from faas.executors.microvm.config import MicroVMSettings
        from faas.executors.microvm.drivers import CHOICES
        from faas.executors.microvm.executor import VMExecutor

        executor = VMExecutor(CHOICES[self.name], MicroVMSettings.from_settings(settings))
        state = await executor.availability()
        if not state.usable:
            await executor.aclose()
            raise ExecutorUnavailable(state.reason)
        return executor


TIERS: tuple[Tier, ...] = (SandboxTier(), DockerTier(), VMTier("microvm"), VMTier("qemu"),
                           VMTier("firecracker"))


def find_tier(name: str) -> Tier | None:
    return next((tier for tier in TIERS if tier.name == name), None)


async def availability(name: str, settings: Settings | None = None) -> Availability:
    """Probe one tier by name (for ``faas doctor``)."""
    tier = find_tier(name)
    if tier is None:
        return Availability(False, f"unknown executor {name!r}")
    return await tier.probe(settings or Settings())


async def build_executors(settings: Settings) -> tuple[dict[str, Executor], dict[str, str]]:
    """(usable executors by name, reasons for the enabled ones that are not usable)."""
    usable: dict[str, Executor] = {}
    missing: dict[str, str] = {}
    for name in settings.executors:
        tier = find_tier(name)
        try:
            if tier is None:
                raise ExecutorUnavailable(f"unknown executor {name!r}")
            usable[name] = await tier.build(settings)
        except FaasError as exc:
            missing[name] = str(exc)
            log.warning("executor %s unavailable: %s", name, exc)
    return usable, missing
