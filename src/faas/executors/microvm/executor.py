"""Executors of the microVM tier: ``qemu``, ``firecracker`` and ``microvm`` (the best that works).

One class, ``VMExecutor``, built from a ``DriverChoice`` (see ``drivers``):
the choice says whether its VMM runs here and makes the driver; the
executor owns the VMs, pools and snapshots. ``QemuExecutor``,
``FirecrackerExecutor`` and ``MicroVMExecutor`` are it with a fixed choice.

Each invocation gets a fresh VM (shared read-only root disk, private
scratch disk, vCPUs and memory from the request's limits within the server
maxima), sends the request to the agent, and destroys the VM on every path.

Where the VM comes from (``start_kind`` of the result):
* ``warm``: a pre-started VM from the pool of its class (a ``SingleUsePool``
  per ``VMConfig``; made on the class's first invocation, refilled in the
  background, checked healthy before hand-out, used once);
* ``restored``: started now from a saved snapshot (QEMU, see ``snapshot``);
* ``cold``: booted now.
The pool's own VMs are restored when a snapshot can be had, else booted.
``start_ms`` is the time the invocation waited for its VM.

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
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any

from faas.errors import (
    ExecutorClosed,
    ExecutorUnavailable,
    FaasError,
    SandboxError,
    ValidationError,
)
from faas.executors.base import Availability
from faas.executors.microvm import qemu
from faas.executors.microvm.bundle_tar import guest_tar
from faas.executors.microvm.config import MIB, MicroVMSettings, VMConfig
from faas.executors.microvm.drivers import BEST, FIRECRACKER, QEMU, DriverChoice
from faas.executors.microvm.snapshot import RestoreDriver, SnapshotStore
from faas.executors.microvm.uids import host_uids
from faas.executors.microvm.vm import Driver, MicroVM
from faas.executors.microvm.workdirs import sweep_stale_workdirs
from faas.images.common import ImageBuildError
from faas.images.manifest import GuestImages
from faas.models import ExecutionSpec, InvocationResult, Limits
from faas.pool import PoolPolicy, PoolSet
from faas.protocol import AgentReply, AgentRequest

log = logging.getLogger("faas.microvm")
# After a pooled VM's channel broke: how long to wait to see whether its VMM died.
_EXIT_CHECK_S = 0.5
# Guest memory a bundle of N tar bytes may take while it is unpacked: the
# request frame, its blob, the tmpfs copy; refused past 1/3 of the VM.
_CODE_MEMORY_FACTOR = 3


class _PooledVMDied(SandboxError):
    """A pooled VM's VMM died while it was being used (its request may be retried)."""


class VMExecutor:
    """Fresh VMs booted by ``choice``'s driver (``images``: None, the settings' ones)."""

    name: str

    def __init__(self, choice: DriverChoice, settings: MicroVMSettings | None = None,
                 images: GuestImages | None = None) -> None:
        self.name = choice.name
        self.choice = choice
        self.settings = settings or MicroVMSettings()
        self._images = images
        self._driver: Driver | None = None
        self._uids = host_uids(self.settings.vmm)
        self._live: set[MicroVM] = set()
        self._closed = False
        self._pools: PoolSet[MicroVM] | None = None
        self._start_slots = asyncio.Semaphore(max(1, self.settings.parallel_starts))
        self._snapshots: SnapshotStore | None = None
        # Work folders (and any VMM still running) of servers that were killed;
        # never those of a server that still runs.
        swept = sweep_stale_workdirs(self.settings.run_dir)
        if swept:
            log.info("removed %d VM work folder(s) left by dead servers", len(swept))

    async def driver(self) -> Driver:
        """The choice's driver, made once (its canary verdicts are cached)."""
        if self._driver is None:
            self._driver = await self.choice.driver(self.settings, self.images())
        return self._driver

    async def availability(self) -> Availability:
        return await self.choice.probe(self.settings)

    def images(self) -> GuestImages:
        """The guest images (never built here: ``faas image build`` does that)."""
        if self._images is None:
            try:
                self._images = self.settings.guest_images()
            except ImageBuildError as exc:
                raise ExecutorUnavailable(f"{self.name}: {exc}") from exc
        return self._images

    def _vm(self, driver: Driver, config: VMConfig, *, warm_up: bool = False,
            restore_from: Path | None = None) -> MicroVM:
        return MicroVM(driver, config, run_dir=self.settings.run_dir, warm_up=warm_up,
                       restore_from=restore_from, uids=self._uids,
                       runas=self.settings.vmm.qemu_runas)

    async def vm_config(self, limits: Limits) -> VMConfig:
        driver = await self.driver()
        return self.settings.vm_config(self.images(), limits, vsock=driver.vsock)

    async def start_vm(self, limits: Limits, deadline: float | None = None) -> MicroVM:
        """Restore or boot a VM and wait for its agent: the unit a pool keeps.

        The caller owns the returned VM and must ``kill()`` it. Raises
        ``TimeoutError`` if ``deadline`` (loop clock) passes first.
        """
        return await self._start(await self.vm_config(limits), deadline)

    async def _start(self, config: VMConfig, deadline: float | None = None, *,
                     warm_up: bool = False) -> MicroVM:
        vm = await self._restore(config, deadline, warm_up)
        if vm is None:
            vm = await self._boot(self._vm(await self.driver(), config, warm_up=warm_up),
                                  deadline)
        return vm

    async def _restore(self, config: VMConfig, deadline: float | None,
                       warm_up: bool) -> MicroVM | None:
        """A VM restored from this class's snapshot; None where there is none to be had
        (not QEMU, vsock, snapshots off, or taking it failed, or restoring it failed:
        then logged; after a few failures in a row this class boots from now on)."""
        driver = await self.driver()
        if (not self.settings.snapshots or not isinstance(driver, qemu.QemuDriver)
                or driver.vsock):
            return None
        if self._snapshots is None:
            self._snapshots = SnapshotStore(self.settings.image_cache / "snapshots",
                                            run_dir=self.settings.run_dir,
                                            timeout_s=max(60.0, self.settings.boot_timeout_s),
                                            uids=self._uids)
        store = self._snapshots
        try:
            snap = await store.get(driver, config)
        except FaasError as exc:
            log.warning("%s: booting instead of restoring: %s", self.name, exc)
            return None
        vm = self._vm(RestoreDriver(driver, snap), config, warm_up=warm_up,
                      restore_from=snap.state)
        try:
            await self._boot(vm, deadline)
        except FaasError as exc:
            store.failed(snap.key, str(exc))
            log.warning("%s: restoring %s failed, booting instead: %s", self.name,
                        snap.directory, exc)
            return None
        store.restored(snap.key)
        return vm

    async def _boot(self, vm: MicroVM, deadline: float | None) -> MicroVM:
        """Spawn ``vm`` and wait for its agent, at most ``parallel_starts`` at a time:
        under a burst, starts queue (within the caller's deadline) instead of
        sharing the CPUs so thinly that none finishes in time."""
        self._live.add(vm)
        try:
            async with asyncio.timeout_at(deadline), self._start_slots:
                async with asyncio.timeout(self.settings.boot_timeout_s):
                    await vm.spawn()
                    await vm.wait_ready()
        except BaseException:
            await self._discard(vm)
            raise
        return vm

    # -- pools ----------------------------------------------------------------------
    def _pool_set(self) -> PoolSet[MicroVM] | None:
        if self.settings.pool_max <= 0:
            return None
        if self._pools is None:
            s = self.settings
            policy = PoolPolicy(min_size=min(s.pool_min, s.pool_max), max_size=s.pool_max,
                                idle_expiry_s=s.pool_idle_s, max_age_s=s.pool_max_age_s)
            self._pools = PoolSet(self._pool_starter, self._discard, MicroVM.healthy,
                                  policy=policy, budget_bytes=s.pool_memory_mib * MIB,
                                  item_bytes=_config_bytes)
        return self._pools

    def _pool_starter(self, key: Hashable) -> Callable[[], Awaitable[MicroVM]]:
        if not isinstance(key, VMConfig):
            raise TypeError(f"pool key {key!r} is not a VMConfig")
        return functools.partial(self._start, key, warm_up=self.settings.pool_warm_up)

    async def prewarm(self, limits: Limits | None = None, *, ready: int = 1,
                      timeout_s: float = 120.0) -> None:
        """Make the pool of ``limits``' class and wait until ``ready`` VMs wait in it
        (benchmarks and tests; a server simply lets the first invocation make it)."""
        pools = self._pool_set()
        if pools is None:
            return
        pool = pools.pool(await self.vm_config(limits or Limits()))
        async with asyncio.timeout(timeout_s):
            await pool.wait_ready(ready)

    def pool_stats(self) -> list[tuple[str, int, int]]:
        """(pool name, ready, starting) of each class's pool, for ``/metrics``."""
        if self._pools is None:
            return []
        return [(_pool_name(key), pool.ready, pool.starting)
                for key, pool in self._pools.pools.items() if isinstance(key, VMConfig)]

    async def _acquire(self, config: VMConfig, deadline: float, *,
                       pooled: bool = True) -> tuple[MicroVM, str]:
        pools = self._pool_set() if pooled else None
        if pools is None:
            vm = await self._start(config, deadline)
            return vm, vm.start_kind
        vm, kind, _ = await pools.pool(config).acquire(
            functools.partial(self._start, config, deadline))
        return vm, ("warm" if kind == "warm" else vm.start_kind)

    # -- running ----------------------------------------------------------------------
    async def run(self, spec: ExecutionSpec) -> InvocationResult:
        """Run ``spec`` in a fresh VM. Only ``FaasError``s leave: anything else (a bug,
        an ``OSError`` naming host paths) is logged with its traceback and raised
        as a ``SandboxError`` that says nothing about the host."""
        if self._closed:
            raise ExecutorClosed(self.name)
        try:
            return await self._run(spec)
        except FaasError:
            raise
        except Exception as exc:
            log.exception("%s: unexpected failure running request %s", self.name,
                          spec.request_id)
            raise SandboxError(f"{self.name}: the VM could not run the request "
                               f"({type(exc).__name__})") from exc

    async def _run(self, spec: ExecutionSpec) -> InvocationResult:
        started = time.monotonic()
        config = await self.vm_config(spec.limits)
        code = None if spec.bundle is None else await asyncio.to_thread(guest_tar, spec.bundle)
        if code is not None and _CODE_MEMORY_FACTOR * len(code) > config.memory_mib * MIB:
            raise ValidationError(f"the function's code ({len(code)} bytes as a tar) does not "
                                  f"fit a VM of {config.memory_mib} MiB: ask for more memory")
        try:
            return await self._run_once(spec, config, started, pooled=True, code=code)
        except _PooledVMDied as exc:
            # The VM died between its health check and the request (its VMM was
            # killed): nothing outside a VM sees what ran in it, so running the
            # request again in a fresh VM is safe.
            log.warning("%s: a pooled VM died as it was handed out (%s); retrying in a "
                        "fresh one", self.name, exc)
            return await self._run_once(spec, config, started, pooled=False, code=code)

    async def _run_once(self, spec: ExecutionSpec, config: VMConfig, started: float, *,
                        pooled: bool, code: bytes | None) -> InvocationResult:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(spec.deadline):
                vm, start_kind = await self._acquire(config, spec.deadline, pooled=pooled)
        except TimeoutError:
            if loop.time() < spec.deadline:  # our boot timeout, not the caller's deadline
                raise ExecutorUnavailable(
                    f"{self.name}: the VM did not boot within "
                    f"{self.settings.boot_timeout_s:g}s") from None
            return self._result(spec, started, timed_out=True,
                                error="timed out while the VM was booting")
        start_ms = (time.monotonic() - started) * 1000
        try:
            left = spec.deadline - loop.time()
            request = AgentRequest(
                command=list(spec.command), env=dict(spec.env), stdin=spec.payload,
                timeout_s=max(0.05, left - self.settings.agent_margin_s),
                output_limit=spec.limits.output_bytes,
                bundle=None if spec.bundle is None or code is None
                else (spec.bundle.sha256, code),
                secrets=tuple((secret.name, secret.value) for secret in spec.secrets),
            )
            for feature, needed, what in (
                    ("function", code is not None, "a function's code at /function"),
                    ("secrets", bool(spec.secrets), "secrets at /run/secrets")):
                if needed and feature not in vm.hello.get("features", []):
                    raise ExecutorUnavailable(
                        f"{self.name}: the guest agent (version {vm.hello.get('agent')}) cannot "
                        f"show {what}; rebuild the guest image (faas image build)")
            try:
                async with asyncio.timeout_at(spec.deadline + self.settings.kill_grace_s):
                    reply = await vm.run(request)
            except TimeoutError:
                result = self._result(spec, started, vm=vm, timed_out=True,
                                      error="timed out; the VM was destroyed")
            except SandboxError as exc:
                if start_kind == "warm" and await vm.exits_within(_EXIT_CHECK_S):
                    raise _PooledVMDied(str(exc)) from exc
                raise
            else:
                result = self._from_reply(spec, started, vm, reply)
            result.start_kind, result.start_ms = start_kind, start_ms
            return result
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
            if vm.driver.accel:
                extra["microvm"]["accel"] = vm.driver.accel
        return InvocationResult(
            error=error, timed_out=timed_out, request_id=spec.request_id, executor=self.name,
            duration_ms=(time.monotonic() - started) * 1000, extra=extra,
        )

    async def aclose(self) -> None:
        """Drain the pools and destroy every VM still running. Idempotent."""
        self._closed = True
        if self._pools is not None:
            await self._pools.aclose()
        live, self._live = list(self._live), set()
        await asyncio.gather(*(vm.kill() for vm in live), return_exceptions=True)


class QemuExecutor(VMExecutor):
    """``qemu``: QEMU ``-M microvm``, KVM when the canary passes, else TCG."""

    name = "qemu"

    def __init__(self, settings: MicroVMSettings | None = None,
                 images: GuestImages | None = None) -> None:
        super().__init__(QEMU, settings, images)


class FirecrackerExecutor(VMExecutor):
    """``firecracker``: only where its canary boot passes; otherwise a fast, explained refusal."""

    name = "firecracker"

    def __init__(self, settings: MicroVMSettings | None = None,
                 images: GuestImages | None = None) -> None:
        super().__init__(FIRECRACKER, settings, images)


class MicroVMExecutor(VMExecutor):
    """``microvm``: Firecracker if its canary passes, else QEMU."""

    name = "microvm"

    def __init__(self, settings: MicroVMSettings | None = None,
                 images: GuestImages | None = None) -> None:
        super().__init__(BEST, settings, images)


def _config_bytes(key: Hashable) -> int:
    """Guest memory a pooled VM of class ``key`` holds (for the pools' budget)."""
    return key.memory_mib * MIB if isinstance(key, VMConfig) else 0


def _pool_name(config: VMConfig) -> str:
    name = f"{config.vcpus}vcpu-{config.memory_mib}mib-{config.scratch_bytes // MIB}mibtmp"
    return f"{name}-{config.pids}pids" if config.pids else name
