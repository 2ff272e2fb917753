"""Build the executors a server offers, and say why the others are missing.

Each tier is constructed only if it is enabled (``FAAS_EXECUTORS``) and usable
here; an unusable tier is left out with its reason, which ``/readyz`` and
``faas doctor`` report and a request naming it gets as a clear error.
"""

from __future__ import annotations

import logging

from faas.config import Settings
from faas.errors import FaasError
from faas.executors.base import Availability, Executor
from faas.executors.sandbox import SandboxExecutor
from faas.executors.sandbox import availability as sandbox_availability

log = logging.getLogger("faas.executors")


async def availability(name: str) -> Availability:
    """Probe one tier by name (for ``faas doctor``)."""
    if name == "sandbox":
        return await sandbox_availability()
    return Availability(False, f"unknown executor {name!r}")


async def build_executors(settings: Settings) -> tuple[dict[str, Executor], dict[str, str]]:
    """(usable executors by name, reasons for the enabled ones that are not usable)."""
    usable: dict[str, Executor] = {}
    missing: dict[str, str] = {}
    for name in settings.executors:
        try:
            executor = await _build(name, settings)
        except FaasError as exc:
            missing[name] = str(exc)
            log.warning("executor %s unavailable: %s", name, exc)
            continue
        if executor is None:
            missing[name] = "not built into this version"
        else:
            usable[name] = executor
    return usable, missing


async def _build(name: str, settings: Settings) -> Executor | None:
    if name == "sandbox":
        return SandboxExecutor(
            cgroup_root=settings.cgroup_root, uid_base=settings.sandbox_uid_base,
            max_sandboxes=settings.max_concurrency, cache_dir=settings.cache_dir,
        )
    return None
