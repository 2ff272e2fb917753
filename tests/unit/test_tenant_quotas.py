"""``TenantQuotas``: quotas resolved from the tenant's row (cached), admission, per-call
maxima and deploy quotas, with a fake store and a clock stepped by hand."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from faas.config import Settings, TenancySettings
from faas.errors import (
    AdmissionRejected,
    NotFound,
    QuotaExceeded,
    StoreUnavailable,
    ValidationError,
)
from faas.store.tenant_records import Tenant
from faas.tenancy.enforcement import CACHE_S, TenantQuotas
from faas.tenancy.principal import Principal, Role

A = Principal("a", Role.DEVELOPER, "ka")
B = Principal("b", Role.DEVELOPER, "kb")


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class FakeTenants:
    def __init__(self, **quotas: dict[str, Any]) -> None:
        self.quotas = quotas
        self.reads = 0

    async def get_tenant(self, name: str) -> Tenant:
        self.reads += 1
        if name not in self.quotas:
            raise NotFound(name)
        return Tenant(name, 0, MappingProxyType(self.quotas[name]))


def make(tenants: FakeTenants, clock: Clock, usage: Any = None,
         settings: Settings | None = None) -> TenantQuotas:
    return TenantQuotas(settings or Settings(), tenants.get_tenant, usage, clock=clock)


async def test_defaults_without_a_row_equal_the_server_limits() -> None:
    settings = Settings()
    quotas = await make(FakeTenants(), Clock(), settings=settings).quotas("nobody")
    assert quotas.max_concurrency == settings.max_concurrency
    assert quotas.rate_per_s == 0 and quotas.max_memory_mb == settings.max_memory_mb


async def test_overrides_are_cached_and_a_change_shows_within_the_cache_time() -> None:
    tenants, clock = FakeTenants(a={"max_functions": 3}), Clock()
    service = make(tenants, clock)
    assert (await service.quotas("a")).max_functions == 3
    tenants.quotas["a"] = {"max_functions": 5}
    assert (await service.quotas("a")).max_functions == 3
    assert tenants.reads == 1  # the hot path reads the row once per CACHE_S
    clock.now += CACHE_S
    assert (await service.quotas("a")).max_functions == 5


async def test_the_last_known_quotas_hold_while_the_store_is_away() -> None:
    tenants, clock = FakeTenants(a={"max_functions": 3}), Clock()
    service = make(tenants, clock)
    assert (await service.quotas("a")).max_functions == 3

    async def away(name: str) -> Tenant:
        raise StoreUnavailable("down")

    service._get_tenant = away
    clock.now += CACHE_S
    assert (await service.quotas("a")).max_functions == 3
    with pytest.raises(StoreUnavailable):  # never seen: nothing to fall back on
        await service.quotas("b")


async def test_over_its_rate_a_tenant_gets_429_with_retry_after_and_others_do_not() -> None:
    clock = Clock()
    service = make(FakeTenants(a={"rate_per_s": 0.5, "burst": 2}), clock)
    for _ in range(2):
        async with service.admit(A):
            pass
    with pytest.raises(AdmissionRejected) as rejected:
        async with service.admit(A):
            pass
    assert rejected.value.status == 429 and rejected.value.retry_after_s == 2
    async with service.admit(B):  # b has the defaults: no rate limit
        pass
    clock.now += 2.0
    async with service.admit(A):
        pass


async def test_concurrency_slots_are_held_for_the_whole_call() -> None:
    service = make(FakeTenants(a={"max_concurrency": 2}), Clock())
    async with service.admit(A), service.admit(A):
        with pytest.raises(AdmissionRejected) as rejected:
            async with service.admit(A):
                pass
        assert rejected.value.retry_after_s == 1 and "concurrency" in str(rejected.value)
        async with service.admit(B):
            pass
    async with service.admit(A):  # released
        assert service.limiter.running("a") == 1
    assert service.limiter.running("a") == 0


async def test_a_slot_is_given_back_when_the_call_fails() -> None:
    service = make(FakeTenants(a={"max_concurrency": 1}), Clock())
    with pytest.raises(RuntimeError):
        async with service.admit(A):
            raise RuntimeError("boom")
    async with service.admit(A):
        pass


async def test_a_call_refused_for_concurrency_spends_no_token() -> None:
    clock = Clock()
    service = make(FakeTenants(a={"max_concurrency": 1, "rate_per_s": 1, "burst": 2}), clock)
    async with service.admit(A):
        for _ in range(3):
            with pytest.raises(AdmissionRejected, match="concurrency"):
                async with service.admit(A):
                    pass
    async with service.admit(A):  # the second token is still there
        pass


async def test_the_default_concurrency_leaves_the_server_admission_in_charge() -> None:
    settings = Settings(max_concurrency=2)
    service = make(FakeTenants(), Clock(), settings=settings)
    async with service.admit(A), service.admit(A), service.admit(A):
        pass  # beyond 2: the orchestrator's wait queue decides, as without tenants
    assert len(service.limiter) == 0


async def test_per_call_maxima_are_checked_against_resolved_values() -> None:
    service = make(FakeTenants(a={"max_memory_mb": 256, "max_timeout_s": 5, "max_vcpus": 1}),
                   Clock())
    await service.check_call(A, 256, 1, 5.0)
    with pytest.raises(ValidationError, match="max_memory_mb"):
        await service.check_call(A, 257, 1, 5.0)
    with pytest.raises(ValidationError, match="max_timeout_s"):
        await service.check_call(A, 128, 1, 5.5)
    with pytest.raises(ValidationError, match="max_vcpus"):
        await service.check_call(A, 128, 2, 1.0)
    await service.check_call(B, 512, 1, 10.0)


async def test_deploys_are_bounded_by_count_and_bundle_bytes() -> None:
    usage_of: dict[str, tuple[int, int]] = {"a": (2, 900)}
    seen: list[tuple[str, str | None]] = []

    async def usage(tenant: str, *, excluding: str | None = None) -> tuple[int, int]:
        seen.append((tenant, excluding))
        return usage_of.get(tenant, (0, 0))

    service = make(FakeTenants(a={"max_functions": 3, "max_bundle_bytes": 1000}), Clock(),
                   usage)
    await service.check_deploy(A, "a/new", 100)
    assert seen == [("a", "a/new")]
    with pytest.raises(QuotaExceeded, match="max_bundle_bytes") as over:
        await service.check_deploy(A, "a/new", 101)
    assert over.value.status == 403 and "quota exceeded" in str(over.value)
    usage_of["a"] = (3, 0)
    with pytest.raises(QuotaExceeded, match="max_functions"):
        await service.check_deploy(A, "a/new", 0)
    await service.check_deploy(B, "b/x", 10)


def test_settings_defaults_carry_into_quotas() -> None:
    settings = Settings(tenancy=TenancySettings(rate_per_s=5.0, max_concurrency=3))
    service = TenantQuotas(settings)
    assert service.defaults.rate_per_s == 5.0 and service.defaults.burst == 5
    assert service.defaults.max_concurrency == 3
