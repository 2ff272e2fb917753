"""The microVM tier: fresh QEMU or Firecracker VMs per invocation.

Public names: ``QemuExecutor`` ("qemu"), ``FirecrackerExecutor``
("firecracker"), ``MicroVMExecutor`` ("microvm": Firecracker where its canary
boot passes, else QEMU), ``MicroVMSettings``, and the per-driver
``qemu_availability`` / ``firecracker_availability`` / ``microvm_availability``
coroutines (settings: the server's, from the environment, when not given).
"""

from __future__ import annotations

from faas.config import Settings
from faas.executors.base import Availability
from faas.executors.microvm.config import MicroVMSettings
from faas.executors.microvm.drivers import BEST, FIRECRACKER, QEMU
from faas.executors.microvm.executor import FirecrackerExecutor, MicroVMExecutor, QemuExecutor


def _settings(settings: MicroVMSettings | None) -> MicroVMSettings:
    return settings if settings is not None else MicroVMSettings.from_settings(Settings.from_env())


async def qemu_availability(settings: MicroVMSettings | None = None) -> Availability:
    return await QEMU.probe(_settings(settings))


async def firecracker_availability(settings: MicroVMSettings | None = None) -> Availability:
    return await FIRECRACKER.probe(_settings(settings))


async def microvm_availability(settings: MicroVMSettings | None = None) -> Availability:
    return await BEST.probe(_settings(settings))


__all__ = [
    "FirecrackerExecutor",
    "MicroVMExecutor",
    "MicroVMSettings",
    "QemuExecutor",
    "firecracker_availability",
    "microvm_availability",
    "qemu_availability",
]
