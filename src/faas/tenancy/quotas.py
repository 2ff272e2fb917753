"""A tenant's quotas: the server's defaults (``Settings.tenancy``), overridden per tenant.

``Quotas.of(settings, overrides)`` resolves them; the overrides are what an
admin stored for the tenant (``PUT /tenants/{name}``), checked by
``check_overrides`` (known names, numbers in range) before they are stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faas.config import Settings


@dataclass(frozen=True, slots=True)
class Quotas:
    #: invocations of this tenant running at once
    max_concurrency: int
    #: invocations started per second (token bucket); 0: no limit
    rate_per_s: float
    burst: int
    #: async calls of this tenant waiting in the queue
    max_queued: int
    max_functions: int
    #: packed bundle bytes of the tenant's live functions, in all
    max_bundle_bytes: int
    #: the most one call may ask for
    max_memory_mb: int
    max_vcpus: int
    max_timeout_s: float

    @classmethod
    def defaults(cls, settings: Settings) -> Quotas:
        t = settings.tenancy
        return cls(
            max_concurrency=t.max_concurrency or settings.max_concurrency,
            rate_per_s=t.rate_per_s, burst=t.burst or max(1, int(t.rate_per_s)),
            max_queued=t.max_queued or settings.invocations.max_async_queue,
            max_functions=t.max_functions, max_bundle_bytes=t.max_bundle_bytes,
            max_memory_mb=settings.max_memory_mb, max_vcpus=settings.max_vcpus,
            max_timeout_s=settings.max_timeout_s)

    @classmethod
    def of(cls, settings: Settings, overrides: Mapping[str, Any]) -> Quotas:
        quotas = dataclasses.replace(cls.defaults(settings), **check_overrides(overrides))
        if "rate_per_s" in overrides and "burst" not in overrides:
            quotas = dataclasses.replace(quotas, burst=max(1, int(quotas.rate_per_s)))
        return quotas


_LIMITS: dict[str, tuple[type, float]] = {
    "max_concurrency": (int, 1), "rate_per_s": (float, 0), "burst": (int, 1),
    "max_queued": (int, 0), "max_functions": (int, 0), "max_bundle_bytes": (int, 0),
    "max_memory_mb": (int, 16), "max_vcpus": (int, 1), "max_timeout_s": (float, 0.001)}


def check_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides as typed values; ``ValueError`` naming the first bad one."""
    checked: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in _LIMITS:
            raise ValueError(f"unknown quota {str(name)[:64]!r}; known: {', '.join(_LIMITS)}")
        kind, low = _LIMITS[name]
        # 5.0 is an integer in JSON (and JSON Schema): what many JSON encoders write for 5.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                kind is int and not (isinstance(value, int) or value.is_integer())) or \
                not low <= value <= 1e15:
            raise ValueError(f"quota {name} must be a{'n integer' if kind is int else ' number'}"
                             f" >= {low:g}")
        checked[name] = kind(value)
    return checked


def overrides_schema() -> dict[str, Any]:
    """The JSON schema of a tenant's overrides (``{"max_concurrency": 4, ...}``), for the
    API document: the names and lower bounds ``check_overrides`` enforces."""
    return {"type": "object", "additionalProperties": False, "properties": {
        name: {"type": "integer" if kind is int else "number", "minimum": low, "maximum": 1e15}
        for name, (kind, low) in _LIMITS.items()}}
