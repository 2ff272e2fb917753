"""Deployed functions for the gateway: the store, the bundle store, the gates, the counts.

``await Functions.open(settings, metrics)`` opens the store (running its
migrations), the bundle store (sweeping work folders of dead servers) and
is closed by ``close()`` after the last call: counts still being written
are awaited first. Counting never fails a call that ran: a store error is
logged and the call's answer stands.
"""

from __future__ import annotations

import asyncio
import logging

from faas.bundles import BundleLimits, BundleStore
from faas.config import Settings
from faas.errors import AdmissionRejected, FaasError, InvocationTimeout, ValidationError
from faas.functions.gates import Gates
from faas.functions.recent import RecentLookups
from faas.metrics import Metrics
from faas.models import FunctionBundle
from faas.store import FunctionSpec, Store, open_store

log = logging.getLogger("faas.functions")
#: A count that takes longer than this is given up (and logged).
COUNT_TIMEOUT_S = 10.0


def outcome_of(exc: BaseException | None, error: str | None = None) -> str:
    """The outcome counted for a call that ended with ``exc`` (None: it ran; ``error`` its own)."""
    if exc is None:
        return "ok" if error is None else "error"
    if isinstance(exc, InvocationTimeout):
        return "timeout"
    if isinstance(exc, AdmissionRejected):
        return "rejected"
    if isinstance(exc, ValidationError):
        return "invalid"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "platform_error"


class Functions:
    def __init__(self, settings: Settings, store: Store, bundles: BundleStore,
                 metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.bundles = bundles
        self.metrics = metrics
        self.gates = Gates(settings.max_queue)
        self.recent = RecentLookups()
        self._counting: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, settings: Settings, metrics: Metrics) -> Functions:
        store = await open_store(settings.database_url or None, settings.data_dir)
        bundles = BundleStore(settings.data_dir, BundleLimits(
            packed_bytes=settings.max_bundle_bytes,
            unpacked_bytes=settings.max_bundle_unpacked_bytes))
        swept = await asyncio.to_thread(bundles.sweep_dead_instances)
        if swept:
            log.info("removed %d bundle work folders of servers that died", len(swept))
        return cls(settings, store, bundles, metrics)

    def bundle_of(self, spec: FunctionSpec) -> FunctionBundle | None:
        """What the executor mounts at /function for ``spec`` (None: no bundle)."""
        if spec.bundle is None:
            return None
        return FunctionBundle(spec.bundle.sha256, self.bundles.path(spec.bundle.sha256),
                              spec.bundle.unpacked_bytes)

    def record(self, function_id: str, version: int, outcome: str) -> None:
        """Count one call of a deployed version: in ``/metrics`` now, in the store soon."""
        self.metrics.function_invocations.labels(function_id, outcome).inc()
        task = asyncio.ensure_future(self._count(function_id, version, outcome))
        self._counting.add(task)
        task.add_done_callback(self._counting.discard)

    async def _count(self, function_id: str, version: int, outcome: str) -> None:
        try:
            async with asyncio.timeout(COUNT_TIMEOUT_S):
                await self.store.count_invocation(function_id, version, outcome)
        except (FaasError, TimeoutError) as exc:
            log.warning("could not count an invocation of %s v%d (%s): %s", function_id,
                        version, outcome, exc)

    async def close(self) -> None:
        if self._counting:
            await asyncio.wait(set(self._counting), timeout=COUNT_TIMEOUT_S)
        await self.store.close()
