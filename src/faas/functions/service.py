"""Deployed functions for the gateway: the store, the bundle store, the gates, the counts.

``await Functions.open(settings, metrics)`` opens the store (running its
migrations), the bundle store (sweeping work folders of dead servers) and
is closed by ``close()`` after the last call: counts still being written
are awaited first. Counting never fails a call that ran: a store error is
logged and the call's answer stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from pathlib import Path

from faas.bundles import BundleLimits, BundleStore
from faas.config import Settings
from faas.errors import (
    AdmissionRejected,
    FaasError,
    InvocationTimeout,
    StoreUnavailable,
    ValidationError,
)
from faas.functions.gates import Gates
from faas.functions.recent import RecentLookups
from faas.metrics import ADHOC, Metrics
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
        prepare_data_dir(settings.data_dir)
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

    def count_call(self, function_id: str, version: int | None, outcome: str) -> None:
        """Count a call: a deployed version under its own id (and in the store), any other
        under ``adhoc`` (never an id the caller chose: metric labels stay bounded)."""
        if version is None:
            self.metrics.function_invocations.labels(ADHOC, outcome).inc()
        else:
            self.record(function_id, version, outcome)

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


def prepare_data_dir(data_dir: Path) -> None:
    """Make the data folder traversable (0711), never listable by others.

    The sandbox tier binds a bundle while running as an unprivileged host
    uid, which must be able to pass through every folder above it; what the
    folder holds stays private (the SQLite file is 0600, ``bundles/`` is
    0711 and each bundle is published read-only). A folder of ours that an
    older server or the operator made 0700 gets the others' search bit only.
    """
    try:
        data_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
        info = data_dir.stat()
        if info.st_uid == os.geteuid() and not info.st_mode & stat.S_IXOTH:
            data_dir.chmod(stat.S_IMODE(info.st_mode) | stat.S_IXUSR | stat.S_IXGRP
                           | stat.S_IXOTH)
            log.info("data folder made traversable (o+x) for the sandbox uids")
    except OSError as exc:
        raise StoreUnavailable(f"cannot prepare the data folder ({type(exc).__name__})") from exc
    for folder in data_dir.resolve().parents:
        with contextlib.suppress(OSError):
            if not folder.stat().st_mode & stat.S_IXOTH:
                log.warning("the sandbox tier cannot reach deployed code in %s: %s is not "
                            "traversable by other users (o+x); move FAAS_DATA_DIR or chmod "
                            "o+x it", data_dir, folder)
                break
