"""Executors of the microVM tier: ``qemu``, ``firecracker`` and ``microvm`` (the best that works).

Each invocation boots a fresh VM (shared read-only root disk, private
scratch disk, vCPUs and memory from the request's limits within the server
maxima), sends the request to the agent, and destroys the VM on every path.

Deadline (``spec.deadline``, loop clock) handling:
* while booting, the deadline cancels the boot and the result is
  ``timed_out`` with nothing run;
* the agent is told to stop the command ``agent_margin_s`` before the
  deadline, so it can kill it and still return partial output;
* if no reply has come ``kill_grace_s`` after the deadline the VM is killed
  and the result is ``timed_out`` without output.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from faas.agent.protocol import AgentReply, AgentRequest
from faas.errors import ExecutorUnavailable
from faas.executors.base import Availability
from faas.executors.microvm import firecracker, qemu
from faas.executors.microvm.config import MicroVMSettings
from faas.executors.microvm.vm import Driver, MicroVM, sweep_stale_workdirs
from faas.images.build import GuestImages, guest_images
from faas.images.common import ImageBuildError
from faas.models import ExecutionSpec, InvocationResult, Limits


class _MicroVMExecutor:
    """Shared run logic; subclasses say which driver to use."""

    name = "microvm"

    def __init__(self, settings: MicroVMSettings | None = None,
                 images: GuestImages | None = None) -> None:
        self.settings = settings or MicroVMSettings()
        self._images = images
        self._live: set[MicroVM] = set()
        self._closed = False
        # Files a SIGKILLed predecessor left (its VMMs died with it).
        sweep_stale_workdirs(self.settings.run_dir)

    # -- what subclasses provide ----------------------------------------------------
    async def driver(self) -> Driver:
        raise NotImplementedError

    async def availability(self) -> Availability:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------
    def images(self) -> GuestImages:
        """The guest images (never built here: ``faas image build`` does that)."""
        if self._images is None:
            try:
                self._images = guest_images(self.settings.cache_dir, build=False)
            except ImageBuildError as exc:
                raise ExecutorUnavailable(f"{self.name}: {exc}") from exc
        return self._images

    async def start_vm(self, limits: Limits, deadline: float | None = None) -> MicroVM:
        """Spawn a VM and wait for its agent: the unit a pre-started pool would keep.

        The caller owns the returned VM and must ``kill()`` it. Raises
        ``TimeoutError`` if ``deadline`` (loop clock) passes first.
        """
        driver = await self.driver()
        config = self.settings.vm_config(self.images(), limits,
                                         vsock=getattr(driver, "vsock", False))
        vm = MicroVM(driver, config, run_dir=self.settings.run_dir)
        self._live.add(vm)
        loop = asyncio.get_running_loop()
        boot_deadline = loop.time() + self.settings.boot_timeout_s
        if deadline is not None:
            boot_deadline = min(boot_deadline, deadline)
        try:
            async with asyncio.timeout_at(boot_deadline):
                await vm.spawn()
                await vm.wait_ready()
        except BaseException:
            await self._discard(vm)
            raise
        return vm

    async def run(self, spec: ExecutionSpec) -> InvocationResult:
        if self._closed:
            raise ExecutorUnavailable(f"{self.name} executor is closed")
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            vm = await self.start_vm(spec.limits, spec.deadline)
        except TimeoutError:
            if loop.time() < spec.deadline:  # our boot timeout, not the caller's deadline
                raise ExecutorUnavailable(
                    f"{self.name}: the VM did not boot within "
                    f"{self.settings.boot_timeout_s:g}s") from None
            return self._result(spec, started, timed_out=True,
                                error="timed out while the VM was booting")
        try:
            left = spec.deadline - loop.time()
            request = AgentRequest(
                command=list(spec.command), env=dict(spec.env), stdin=spec.payload,
                timeout_s=max(0.05, left - self.settings.agent_margin_s),
                output_limit=spec.limits.output_bytes,
            )
            try:
                async with asyncio.timeout_at(spec.deadline + self.settings.kill_grace_s):
                    reply = await vm.run(request)
            except TimeoutError:
                return self._result(spec, started, vm=vm, timed_out=True,
                                    error="timed out; the VM was destroyed")
            return self._from_reply(spec, started, vm, reply)
        finally:
            await self._discard(vm)

    async def _discard(self, vm: MicroVM) -> None:
        try:
            await vm.kill()
        finally:
            self._live.discard(vm)

    def _from_reply(self, spec: ExecutionSpec, started: float, vm: MicroVM,
                    reply: AgentReply) -> InvocationResult:
        result = self._result(spec, started, vm=vm, timed_out=reply.timed_out,
                              error=reply.error)
        result.stdout, result.stderr = reply.stdout, reply.stderr
        result.exit_code, result.signal = reply.exit_code, reply.signal
        result.stdout_truncated = reply.stdout_truncated
        result.stderr_truncated = reply.stderr_truncated
        return result

    def _result(self, spec: ExecutionSpec, started: float, *, vm: MicroVM | None = None,
                timed_out: bool = False, error: str | None = None) -> InvocationResult:
        extra: dict[str, Any] = {}
        if vm is not None:
            extra["microvm"] = {"driver": vm.driver.name, "vcpus": vm.config.vcpus,
                                "memory_mib": vm.config.memory_mib,
                                **{k: round(v, 1) for k, v in vm.timings.items()}}
            accel = getattr(vm.driver, "accel", None)
            if accel:
                extra["microvm"]["accel"] = accel
        return InvocationResult(
            error=error, timed_out=timed_out, request_id=spec.request_id, executor=self.name,
            duration_ms=(time.monotonic() - started) * 1000, extra=extra,
        )

    async def aclose(self) -> None:
        """Destroy every VM still running. Idempotent."""
        self._closed = True
        live, self._live = list(self._live), set()
        await asyncio.gather(*(vm.kill() for vm in live), return_exceptions=True)


class QemuExecutor(_MicroVMExecutor):
    """QEMU ``-M microvm``: KVM when the canary passes, else TCG."""

    name = "qemu"

    def __init__(self, settings: MicroVMSettings | None = None,
                 images: GuestImages | None = None) -> None:
        super().__init__(settings, images)
        self._driver: qemu.QemuDriver | None = None

    async def driver(self) -> Driver:
        if self._driver is None:
            binary = qemu.qemu_binary()
            if binary is None:
                raise ExecutorUnavailable("qemu: qemu-system-x86_64 is not installed")
            kvm = await qemu.kvm_canary(binary, self.images(), self.settings.cache_dir)
            self._driver = qemu.QemuDriver(binary, "kvm" if kvm.ok else "tcg",
                                           vsock=qemu.vhost_vsock_available())
        return self._driver

    async def availability(self) -> Availability:
        return await qemu.availability(self.settings.cache_dir)


class FirecrackerExecutor(_MicroVMExecutor):
    """Firecracker: only where its canary boot passes; otherwise a fast, explained refusal."""

    name = "firecracker"

    async def driver(self) -> Driver:
        return await firecracker.ready_driver(self.images(), self.settings.cache_dir)

    async def availability(self) -> Availability:
        return await firecracker.availability(self.settings.cache_dir)


class MicroVMExecutor(_MicroVMExecutor):
    """The best microVM driver that works here: Firecracker if its canary passes, else QEMU."""

    name = "microvm"

    def __init__(self, settings: MicroVMSettings | None = None,
                 images: GuestImages | None = None) -> None:
        super().__init__(settings, images)
        self._qemu = QemuExecutor(self.settings, images)
        self._firecracker = FirecrackerExecutor(self.settings, images)
        self._chosen: Driver | None = None

    async def driver(self) -> Driver:
        if self._chosen is None:
            self._qemu._images = self._firecracker._images = self.images()
            try:
                self._chosen = await self._firecracker.driver()
            except ExecutorUnavailable:
                self._chosen = await self._qemu.driver()
        return self._chosen

    async def availability(self) -> Availability:
        fc = await self._firecracker.availability()
        if fc.usable:
            return Availability(True, f"using Firecracker: {fc.reason}")
        qm = await self._qemu.availability()
        if qm.usable:
            return Availability(True, f"using QEMU: {qm.reason}; Firecracker unusable: "
                                      f"{fc.reason}")
        return Availability(False, f"Firecracker: {fc.reason}; QEMU: {qm.reason}")
