"""The orchestrator: from a validated request to a result, under admission and a deadline.

For each invocation it picks the executor (the request's ``executor`` or the
server default), resolves limits within the server maxima, fixes the
deadline (default, per-request override up to the maximum), waits for an
admission slot (at most ``max_concurrency`` running, at most ``max_queue``
waiting, never more: beyond that ``AdmissionRejected``), runs the executor in
a task it owns, and records metrics.

Shutdown: ``shutdown(grace_s)`` stops admitting, lets running invocations
finish until the grace deadline, cancels the rest (each executor cleans up on
cancellation) and closes every executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping

from faas.config import Settings
from faas.errors import (
    AdmissionRejected,
    ExecutorUnavailable,
    FaasError,
    InvocationTimeout,
    PayloadTooLarge,
    ShuttingDown,
    UnknownExecutor,
    ValidationError,
)
from faas.executors.base import Executor, PoolStats
from faas.logs import clip
from faas.metrics import UNKNOWN, Metrics
from faas.models import ExecutionSpec, FunctionBundle, InvocationResult, InvokeRequest, Limits
from faas.secrets.values import Secret, check_secrets

log = logging.getLogger("faas.orchestrator")
MiB = 1024 * 1024


class Admission:
    """At most ``limit`` holders and ``queue`` waiters; a waiter past its deadline leaves.

    ``metrics`` None: a gate that reports nothing (a deployed function's own
    cap, ``faas.functions.gates``, in front of the server-wide one).
    """

    def __init__(self, limit: int, queue: int, metrics: Metrics | None) -> None:
        self.limit = limit
        self.queue = queue
        self.running = 0
        self.waiting = 0
        self._sem = asyncio.Semaphore(limit)
        self._metrics = metrics
        #: called after each slot is given back (the async dispatcher waits for room)
        self.released: Callable[[], None] | None = None

    @contextlib.asynccontextmanager
    async def slot(self, deadline: float) -> AsyncIterator[None]:
        started = time.monotonic()
        metrics = self._metrics
        if self._sem.locked():
            if self.waiting >= self.queue:
                raise AdmissionRejected(
                    f"server busy: {self.running} invocations running and {self.waiting} "
                    "waiting; retry later",
                    retry_after_s=1,
                )
            self.waiting += 1
            if metrics:
                metrics.queued.inc()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._sem.acquire()
            except TimeoutError:
                raise InvocationTimeout(
                    "deadline passed while waiting for an admission slot",
                    InvocationResult(timed_out=True, error="timed out in the admission queue"),
                ) from None
            finally:
                self.waiting -= 1
                if metrics:
                    metrics.queued.dec()
        else:
            await self._sem.acquire()
        self.running += 1
        if metrics:
            metrics.queue_wait.observe(time.monotonic() - started)
            metrics.in_flight.inc()
        try:
            yield
        finally:
            self.running -= 1
            if metrics:
                metrics.in_flight.dec()
            self._sem.release()
            if self.released is not None:
                self.released()


class Orchestrator:
    def __init__(
        self, settings: Settings, executors: Mapping[str, Executor], metrics: Metrics | None = None,
        unavailable: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.executors = dict(executors)
        self.unavailable = dict(unavailable or {})
        self.metrics = metrics or Metrics()
        self.admission = Admission(settings.max_concurrency, settings.max_queue, self.metrics)
        self.accepting = True
        self._tasks: set[asyncio.Task[InvocationResult]] = set()
        # The only values the executor label of a metric may take.
        self._known = {*self.executors, *self.unavailable, *settings.executors}

    def executor_label(self, name: str | None) -> str:
        chosen = name or self.settings.default_executor
        return chosen if chosen in self._known else UNKNOWN

    def pick_executor(self, name: str | None) -> Executor:
        chosen = name or self.settings.default_executor
        executor = self.executors.get(chosen)
        if executor is None and chosen in self.unavailable:
            # The reason (paths, versions) is for the operator: logged at start, in `faas doctor`.
            raise ExecutorUnavailable(f"executor {chosen!r} is unavailable on this host")
        if executor is None:
            known = ", ".join(sorted(self.executors)) or "none"
            raise UnknownExecutor(
                f"unknown or unavailable executor {clip(chosen, 64)!r} (available: {known})"
            )
        return executor

    def build_spec(self, function_id: str, request: InvokeRequest, request_id: str,
                   deadline: float, bundle: FunctionBundle | None = None,
                   secrets: tuple[Secret, ...] = ()) -> ExecutionSpec:
        """The executor's view of one call; ``secrets``: the values the call's function
        may read at ``/run/secrets/<name>`` (checked here: ``ValidationError``)."""
        s = self.settings
        memory_mb = request.memory_mb or s.default_memory_mb
        if memory_mb > s.max_memory_mb:
            raise ValidationError(f"memory_mb {memory_mb} exceeds the maximum {s.max_memory_mb}")
        vcpus = request.vcpus or 1
        if vcpus > s.max_vcpus:
            raise ValidationError(f"vcpus {vcpus} exceeds the maximum {s.max_vcpus}")
        if len(request.payload) > s.max_payload_bytes:
            raise PayloadTooLarge(
                f"payload of {len(request.payload)} bytes exceeds {s.max_payload_bytes}"
            )
        timeout_s = self.timeout_for(request)
        limits = Limits(
            memory_bytes=memory_mb * MiB, pids=s.pids_limit,
            cpu_seconds=int(timeout_s) + 1, file_size_bytes=s.file_size_mb * MiB,
            tmp_bytes=s.tmp_size_mb * MiB, output_bytes=s.output_limit_bytes, vcpus=vcpus,
        )
        return ExecutionSpec(
            request_id=request_id, function_id=function_id, command=tuple(request.command),
            env=request.env(), payload=request.payload, deadline=deadline, limits=limits,
            image=request.image, bundle=bundle, secrets=check_secrets(secrets),
        )

    def check(self, function_id: str, request: InvokeRequest) -> None:
        """Everything ``invoke`` would refuse before running (executor, limits), raised
        now: an async call is refused at once, not when it runs."""
        if not self.accepting:
            raise ShuttingDown("server is shutting down")
        self.pick_executor(request.executor)
        self.build_spec(function_id, request, "", 0.0)

    def timeout_for(self, request: InvokeRequest) -> float:
        timeout_s = request.timeout_s or self.settings.default_timeout_s
        if timeout_s > self.settings.max_timeout_s:
            raise ValidationError(
                f"timeout_s {timeout_s:g} exceeds the maximum {self.settings.max_timeout_s:g}"
            )
        return timeout_s

    async def invoke(self, function_id: str, request: InvokeRequest, request_id: str,
                     bundle: FunctionBundle | None = None,
                     gate: Admission | None = None,
                     secrets: tuple[Secret, ...] = ()) -> InvocationResult:
        """Run one invocation; raise ``FaasError`` subclasses (``InvocationTimeout``...).

        ``bundle``: the deployed function's code; ``gate``: its own concurrency
        cap, waited for (within the deadline) before the server-wide one;
        ``secrets``: shown to the command as files under ``/run/secrets``.
        """
        executor_name = self.executor_label(request.executor)
        outcome = "platform_error"
        started = time.monotonic()
        try:
            if not self.accepting:
                raise ShuttingDown("server is shutting down")
            executor = self.pick_executor(request.executor)
            timeout_s = self.timeout_for(request)
            deadline = asyncio.get_running_loop().time() + timeout_s
            spec = self.build_spec(function_id, request, request_id, deadline, bundle, secrets)
            async with contextlib.AsyncExitStack() as admitted:
                if gate is not None:
                    await admitted.enter_async_context(gate.slot(deadline))
                await admitted.enter_async_context(self.admission.slot(deadline))
                task = asyncio.ensure_future(executor.run(spec))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                try:
                    result = await task
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # our caller was cancelled (client gone)
                    raise ShuttingDown(
                        "the server shut down before the invocation finished; it was killed"
                    ) from None
            result.request_id = request_id
            result.executor = executor.name
            if result.start_kind is not None:
                self.metrics.starts.labels(executor.name, result.start_kind).inc()
                self.metrics.start_time.labels(executor.name, result.start_kind).observe(
                    (result.start_ms or 0.0) / 1000)
            if result.timed_out:
                raise InvocationTimeout(f"invocation timed out after {timeout_s:g}s", result)
            outcome = "ok" if result.error is None else "error"
            return result
        except InvocationTimeout:
            outcome = "timeout"
            raise
        except AdmissionRejected:
            outcome = "rejected"
            raise
        except ValidationError:
            outcome = "invalid"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            elapsed = time.monotonic() - started
            self.metrics.invocations.labels(executor_name, outcome).inc()
            self.metrics.duration.labels(executor_name).observe(elapsed)
            log.info("invocation finished", extra={"fields": {
                "function": clip(function_id), "executor": executor_name, "outcome": outcome,
                "duration_ms": round(elapsed * 1000, 2)}})

    def refresh_pool_gauges(self) -> None:
        """Copy pool sizes from executors that keep pools (``PoolStats``) into metrics."""
        for executor in self.executors.values():
            if not isinstance(executor, PoolStats):
                continue
            for pool_name, ready, starting in executor.pool_stats():
                self.metrics.pool_ready.labels(executor.name, pool_name).set(ready)
                self.metrics.pool_starting.labels(executor.name, pool_name).set(starting)

    async def drain(self, grace_s: float) -> None:
        """Stop admitting; wait for running invocations up to ``grace_s``; kill the rest.

        A killed invocation's caller gets ``ShuttingDown`` (HTTP 503).
        """
        self.accepting = False
        pending = set(self._tasks)
        if pending:
            log.info("shutdown: waiting for %d invocations", len(pending))
            _, pending = await asyncio.wait(pending, timeout=grace_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)

    async def shutdown(self, grace_s: float) -> None:
        """``drain()``, then close every executor."""
        await self.drain(grace_s)
        for executor in self.executors.values():
            try:
                await executor.aclose()
            except FaasError:
                log.exception("closing executor %s failed", executor.name)
