"""The microVM tier: fresh QEMU or Firecracker VMs per invocation.

Public names: ``QemuExecutor`` ("qemu"), ``FirecrackerExecutor``
("firecracker"), ``MicroVMExecutor`` ("microvm": Firecracker where its canary
boot passes, else QEMU), ``MicroVMSettings``, and the per-driver
``qemu_availability`` / ``firecracker_availability`` / ``microvm_availability``
coroutines ``faas doctor`` prints.
"""

from __future__ import annotations

from pathlib import Path

from faas.executors.base import Availability
from faas.executors.microvm.config import MicroVMSettings
from faas.executors.microvm.executor import FirecrackerExecutor, MicroVMExecutor, QemuExecutor
from faas.executors.microvm.firecracker import availability as firecracker_availability
from faas.executors.microvm.qemu import availability as qemu_availability


async def microvm_availability(cache_dir: Path | None = None) -> Availability:
    return await MicroVMExecutor(MicroVMSettings(cache_dir=cache_dir)).availability()


__all__ = [
    "FirecrackerExecutor",
    "MicroVMExecutor",
    "MicroVMSettings",
    "QemuExecutor",
    "firecracker_availability",
    "microvm_availability",
    "qemu_availability",
]
