"""Each tenant's quotas, enforced where the routes need them: ``TenantQuotas``.

What the routes call, and what each answers when over a quota:

    admit(principal)          async context manager around one call's run: a rate token
                              (429 + Retry-After: when the next token is there) and a
                              concurrency slot held for the whole run (429, Retry-After 1)
    take_token(principal)     the rate token alone (an async call at accept)
    check_call(principal, ..) the call's resolved memory, vCPUs, timeout within the
                              tenant's per-call maxima (400 naming the limit);
                              ``check_request`` resolves them from an ``InvokeRequest``
    check_deploy(principal,..) live functions and packed bundle bytes of the tenant, a
                              redeploy replacing its function's bytes (403 quota exceeded)
    max_queued(principal)     the queued async calls the tenant may have (the store
                              checks it in its enqueue transaction: 429)

Quotas come from the tenant's row (``Quotas.of``: the server's defaults and the
tenant's overrides), cached ``CACHE_S`` per tenant, so a changed override takes
effect within that and the hot path reads the store at most once a second per
tenant; while the store cannot be read, a tenant's last known quotas stay in
force. A tenant without a row (an open server's default tenant before any is
made) gets the defaults.

Per-tenant concurrency counts the calls that hold a slot, running or waiting in
the server's admission queue. It is enforced only when it is lower than the
server's ``max_concurrency``: at the default (equal), the server's admission with
its wait queue is the limit, exactly as on a single-tenant server.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from faas.config import Settings
from faas.errors import (
    AdmissionRejected,
    NotFound,
    QuotaExceeded,
    StoreUnavailable,
    ValidationError,
)
from faas.models import InvokeRequest
from faas.store.tenant_records import Tenant
from faas.tenancy.limiter import Limiter, retry_after
from faas.tenancy.principal import Principal
from faas.tenancy.quotas import Quotas

#: How long a tenant's resolved quotas are used before its row is read again.
CACHE_S = 1.0

GetTenant = Callable[[str], Awaitable[Tenant]]
#: ``(tenant, excluding) -> (live functions, packed bundle bytes)``: ``Store.tenant_usage``.
Usage = Callable[..., Awaitable[tuple[int, int]]]


@dataclass(slots=True)
class _Cached:
    quotas: Quotas
    until: float


class TenantQuotas:
    def __init__(self, settings: Settings, get_tenant: GetTenant | None = None,
                 usage: Usage | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.defaults = Quotas.defaults(settings)
        self._get_tenant = get_tenant
        self._usage = usage
        self._clock = clock
        self.limiter = Limiter(clock)
        self._cache: dict[str, _Cached] = {}

    async def quotas(self, tenant: str) -> Quotas:
        """The tenant's quotas, read from its row at most every ``CACHE_S``."""
        now = self._clock()
        cached = self._cache.get(tenant)
        if cached is not None and cached.until > now:
            return cached.quotas
        quotas = self.defaults
        if self._get_tenant is not None:
            try:
                row = await self._get_tenant(tenant)
                quotas = Quotas.of(self.settings, row.quotas) if row.quotas else self.defaults
            except NotFound:
                pass
            except StoreUnavailable:
                if cached is None:
                    raise
                quotas = cached.quotas  # the last known quotas, while the store is away
        if len(self._cache) > 64:  # expired entries of tenants gone quiet
            self._cache = {t: c for t, c in self._cache.items() if c.until > now}
        self._cache[tenant] = _Cached(quotas, now + CACHE_S)
        return quotas

    # -- calls -----------------------------------------------------------------------

    def _take(self, tenant: str, quotas: Quotas) -> None:
        wait = self.limiter.try_take(tenant, quotas.rate_per_s, quotas.burst)
        if wait is not None:
            raise AdmissionRejected(
                f"tenant {tenant!r} is over its rate quota ({quotas.rate_per_s:g} calls/s, "
                f"burst {quotas.burst}); retry later", retry_after_s=retry_after(wait))

    async def take_token(self, principal: Principal) -> Quotas:
        """One rate token of the caller's tenant (``AdmissionRejected`` if none); the
        tenant's quotas."""
        quotas = await self.quotas(principal.tenant)
        self._take(principal.tenant, quotas)
        return quotas

    def _limits_concurrency(self, quotas: Quotas) -> bool:
        return quotas.max_concurrency < self.settings.max_concurrency

    @contextlib.asynccontextmanager
    async def admit(self, principal: Principal) -> AsyncIterator[Quotas]:
        """A rate token and a concurrency slot for one call, the slot held until the
        block ends; ``AdmissionRejected`` (429 with ``retry_after_s``) over either."""
        tenant = principal.tenant
        quotas = await self.quotas(tenant)
        bounded = self._limits_concurrency(quotas)
        # Nothing awaits from here to the acquire: the check, the token and the slot are
        # one step, and a call refused for concurrency spends no token.
        if bounded and self.limiter.running(tenant) >= quotas.max_concurrency:
            raise AdmissionRejected(
                f"tenant {tenant!r} has {quotas.max_concurrency} invocations running, its "
                "concurrency quota; retry later", retry_after_s=1)
        self._take(tenant, quotas)
        if not bounded:
            yield quotas
            return
        self.limiter.try_acquire(tenant, quotas.max_concurrency)
        try:
            yield quotas
        finally:
            self.limiter.release(tenant)

    async def check_call(self, principal: Principal, memory_mb: int, vcpus: int,
                         timeout_s: float) -> None:
        """The call's resolved limits within the tenant's per-call maxima; else a 400.

        A maximum at (or above) the server's own is left to the orchestrator, whose
        400 says the same as on a server without tenants.
        """
        quotas, s = await self.quotas(principal.tenant), self.settings
        for name, value, limit, server in (
                ("memory_mb", memory_mb, quotas.max_memory_mb, s.max_memory_mb),
                ("vcpus", vcpus, quotas.max_vcpus, s.max_vcpus),
                ("timeout_s", timeout_s, quotas.max_timeout_s, s.max_timeout_s)):
            if value > limit and limit < server:
                raise ValidationError(f"{name} {value:g} exceeds the tenant's maximum "
                                      f"{limit:g} (quota max_{name})")

    async def check_request(self, principal: Principal, request: InvokeRequest) -> None:
        """``check_call`` on the values the orchestrator resolves for ``request`` (its
        defaults for what the request leaves out, as ``Orchestrator.build_spec``)."""
        s = self.settings
        await self.check_call(principal, request.memory_mb or s.default_memory_mb,
                              request.vcpus or 1, request.timeout_s or s.default_timeout_s)

    async def max_queued(self, principal: Principal) -> int:
        """How many async calls the caller's tenant may have queued."""
        return (await self.quotas(principal.tenant)).max_queued

    # -- deploys ---------------------------------------------------------------------

    async def check_deploy(self, principal: Principal, qualified_id: str,
                           bundle_bytes: int) -> None:
        """``QuotaExceeded`` (403) if storing ``qualified_id`` with ``bundle_bytes`` would
        take the tenant past its functions or bundle-bytes quota.

        Read, then stored by the caller: two deploys racing may both pass with one slot
        left (each sees the other's function absent); the overshoot is bounded by the
        deploys in flight at once.
        """
        if self._usage is None:
            return
        tenant = principal.tenant
        quotas = await self.quotas(tenant)
        others, others_bytes = await self._usage(tenant, excluding=qualified_id)
        if others + 1 > quotas.max_functions:
            raise QuotaExceeded(
                f"quota exceeded: tenant {tenant!r} has {others} functions, its quota "
                f"(max_functions {quotas.max_functions}); delete one first")
        if others_bytes + bundle_bytes > quotas.max_bundle_bytes:
            raise QuotaExceeded(
                f"quota exceeded: tenant {tenant!r} would have {others_bytes + bundle_bytes} "
                f"bundle bytes, over its quota (max_bundle_bytes {quotas.max_bundle_bytes})")


__all__ = ["CACHE_S", "TenantQuotas"]
