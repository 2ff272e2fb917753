"""What the tenants' quotas need of the store, on both engines: a tenant's functions and
their bundle bytes (``tenant_usage``), and its queued async calls bounded in ``enqueue``."""

from __future__ import annotations

import dataclasses

import pytest
from invocation_helpers import ROOMY, queued

from faas.errors import AdmissionRejected
from faas.store import Store
from faas.store.records import BundleRef, FunctionSpec


def spec(packed: int | None = None) -> FunctionSpec:
    bundle = None if packed is None else BundleRef("ab" * 32, packed, packed * 3)
    return FunctionSpec(command=("true",), bundle=bundle)


async def test_usage_counts_live_functions_and_latest_bundle_bytes(store: Store) -> None:
    assert await store.tenant_usage("a") == (0, 0)
    await store.put_function("a/one", spec(100))
    await store.put_function("a/two", spec())  # no bundle: 0 bytes
    await store.put_function("a-b/x", spec(7))  # a tenant whose name starts with a's
    await store.put_function("ab/x", spec(7))
    await store.put_function("b/one", spec(5))
    assert await store.tenant_usage("a") == (2, 100)
    # A redeploy replaces the function's bytes; it does not add to them.
    await store.put_function("a/one", spec(40))
    assert await store.tenant_usage("a") == (2, 40)
    assert await store.tenant_usage("a", excluding="a/one") == (1, 0)
    # A deleted function counts no more; put again, it counts with its new bytes.
    await store.delete_function("a/one")
    assert await store.tenant_usage("a") == (1, 0)
    await store.put_function("a/one", spec(9))
    assert await store.tenant_usage("a") == (2, 9)
    assert await store.tenant_usage("b") == (1, 5)


async def test_a_tenants_queued_calls_are_bounded_in_the_enqueue(store: Store) -> None:
    limits = {"a": 2}
    for _ in range(2):
        await store.invocations.enqueue(queued("a/f"), max_queued=ROOMY,
                                        tenant_max_queued=limits)
    with pytest.raises(AdmissionRejected) as rejected:
        await store.invocations.enqueue(queued("a/g"), max_queued=ROOMY,
                                        tenant_max_queued=limits)
    assert "max_queued" in str(rejected.value) and rejected.value.retry_after_s >= 1
    # Another tenant, and a tenant without a listed quota, are not affected.
    await store.invocations.enqueue(queued("b/f"), max_queued=ROOMY, tenant_max_queued=limits)
    await store.invocations.enqueue(queued("c/f"), max_queued=ROOMY,
                                    tenant_max_queued={"b": 1, **limits})
    # The global bound still holds.
    with pytest.raises(AdmissionRejected):
        await store.invocations.enqueue(queued("d/f"), max_queued=4)
    # A claimed (running) call no longer counts.
    claimed = await store.invocations.claim("o", 1)
    assert claimed[0].function_id == "a/f" and claimed[0].tenant == "a"
    await store.invocations.enqueue(queued("a/f"), max_queued=ROOMY, tenant_max_queued=limits)


async def test_one_batch_counts_its_own_calls_against_the_tenant(store: Store) -> None:
    calls = [(queued("a/f"), None) for _ in range(3)] + [(queued("b/f"), None)]
    answers = await store.invocations.enqueue_many(calls, max_queued=ROOMY,
                                                   tenant_max_queued={"a": 2, "b": 1})
    assert [isinstance(a, AdmissionRejected) for a in answers] == [False, False, True, False]


async def test_the_record_keeps_its_own_tenant(store: Store) -> None:
    record = dataclasses.replace(queued("fn"), tenant="t")
    await store.invocations.enqueue(record, max_queued=ROOMY)
    assert (await store.invocations.get(record.id)).tenant == "t"
    unqualified = queued("fn")
    await store.invocations.enqueue(unqualified, max_queued=ROOMY)
    assert (await store.invocations.get(unqualified.id)).tenant is None
