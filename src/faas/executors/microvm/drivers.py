"""Which VMM an executor of the microVM tier boots its VMs with.

A ``DriverChoice`` says whether its VMM can run here (``probe``: what
``faas doctor`` and the registry ask; it boots at most a cached canary) and
makes the ``Driver`` the executor then uses for every VM (``driver``):

* ``QEMU``: QEMU ``-M microvm``, KVM where its canary passes, else TCG;
* ``FIRECRACKER``: Firecracker, only where its canary boot passes;
* ``BEST``: Firecracker where it works, else QEMU (the ``microvm`` tier).
"""

from __future__ import annotations

from typing import Protocol

from faas.errors import ExecutorUnavailable
from faas.executors.base import Availability
from faas.executors.microvm import firecracker, qemu
from faas.executors.microvm.config import MicroVMSettings
from faas.executors.microvm.vm import Driver
from faas.images.manifest import GuestImages


class DriverChoice(Protocol):
    name: str  # the executor's (and tier's) name
    label: str  # how availability messages name the VMM

    async def probe(self, settings: MicroVMSettings) -> Availability: ...

    async def driver(self, settings: MicroVMSettings, images: GuestImages) -> Driver:
        """A ready driver, or ``ExecutorUnavailable`` with the reason."""
        ...


class QemuChoice:
    name, label = "qemu", "QEMU"

    async def probe(self, settings: MicroVMSettings) -> Availability:
        return await qemu.probe(settings)

    async def driver(self, settings: MicroVMSettings, images: GuestImages) -> Driver:
        return await qemu.ready_driver(settings, images)


class FirecrackerChoice:
    name, label = "firecracker", "Firecracker"

    async def probe(self, settings: MicroVMSettings) -> Availability:
        return await firecracker.probe(settings)

    async def driver(self, settings: MicroVMSettings, images: GuestImages) -> Driver:
        return await firecracker.ready_driver(settings, images)


class BestOf:
    """``first`` where its driver can be had, else ``fallback``."""

    def __init__(self, name: str, first: DriverChoice, fallback: DriverChoice) -> None:
        self.name, self.label = name, f"{first.label} or {fallback.label}"
        self.first, self.fallback = first, fallback

    async def probe(self, settings: MicroVMSettings) -> Availability:
        first = await self.first.probe(settings)
        if first.usable:
            return Availability(True, f"using {self.first.label}: {first.reason}")
        fallback = await self.fallback.probe(settings)
        if fallback.usable:
            return Availability(True, f"using {self.fallback.label}: {fallback.reason}; "
                                      f"{self.first.label} unusable: {first.reason}")
        return Availability(False, f"{self.first.label}: {first.reason}; "
                                   f"{self.fallback.label}: {fallback.reason}")

    async def driver(self, settings: MicroVMSettings, images: GuestImages) -> Driver:
        try:
            return await self.first.driver(settings, images)
        except ExecutorUnavailable:
            return await self.fallback.driver(settings, images)


QEMU = QemuChoice()
FIRECRACKER = FirecrackerChoice()
BEST = BestOf("microvm", FIRECRACKER, QEMU)
CHOICES: dict[str, DriverChoice] = {c.name: c for c in (BEST, QEMU, FIRECRACKER)}
