"""Functions and their versions, on both engines (the ``store`` fixture is parametrized)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest
from store_backend import Backend

from faas.errors import NotFound, StoreUnavailable, ValidationError
from faas.store import MAX_LABEL_FILTERS, MAX_PAGE_SIZE, BundleRef, FunctionSpec, Store


def spec(description: str = "", **labels: str) -> FunctionSpec:
    return FunctionSpec(command=("python3", "-c", "print(1)"), description=description,
                        labels=labels)


async def test_a_put_creates_version_one_and_later_puts_count_on(store: Store) -> None:
    before = datetime.now(UTC)
    first = await store.put_function("hello", spec("one"))
    second = await store.put_function("hello", spec("two"))
    assert (first.version, second.version) == (1, 2)
    assert before <= first.created_at <= second.created_at <= datetime.now(UTC)

    info = await store.get_function("hello")
    assert info.latest == second
    assert (info.first_version, info.version_count, list(info.versions)) == (1, 2, [1, 2])
    assert info.created_at == first.created_at
    assert info.updated_at == second.created_at
    assert dict(info.invocations) == {}
    assert (await store.get_version("hello", 1)).spec.description == "one"
    assert await store.get_version("hello", 2) == second


async def test_missing_functions_and_versions_are_not_found(store: Store) -> None:
    await store.put_function("there", spec())
    with pytest.raises(NotFound):
        await store.get_function("absent")
    with pytest.raises(NotFound):
        await store.get_version("there", 2)
    with pytest.raises(NotFound):
        await store.get_version("absent", 1)
    with pytest.raises(NotFound):
        await store.delete_function("absent")


@pytest.mark.parametrize("bad_id", ["", "-leading-dash", "has space", "x" * 129, "é",
                                    "a/b/c", "A/b", "/b", "a/"])
async def test_malformed_ids_and_versions_are_refused(store: Store, bad_id: str) -> None:
    with pytest.raises(ValidationError):
        await store.put_function(bad_id, spec())
    with pytest.raises(ValidationError):
        await store.get_function(bad_id)
    await store.put_function("ok", spec())
    for version in (0, -1, True, 2**31, 2**63):
        with pytest.raises(ValidationError):
            await store.get_version("ok", version)


async def test_concurrent_puts_get_distinct_consecutive_versions(backend: Backend) -> None:
    # Two stores, two connection pools: the puts really race in the database.
    stores = [await backend.open(), await backend.open()]
    try:
        puts = [stores[n % 2].put_function("racy", spec(f"put {n}")) for n in range(40)]
        versions = await asyncio.gather(*puts)
        assert sorted(v.version for v in versions) == list(range(1, 41))
        for put in versions:  # each number names the spec of the put that got it
            assert (await stores[0].get_version("racy", put.version)).spec == put.spec
        info = await stores[1].get_function("racy")
        assert info.latest_version == 40
        # The last put to commit may have read the clock first: the time never goes back.
        assert info.updated_at == max(put.created_at for put in versions)
    finally:
        for opened in stores:
            await opened.close()


async def test_list_pages_through_every_function_in_id_order(store: Store) -> None:
    ids = [f"fn-{n:03d}" for n in range(23)]
    for function_id in random.sample(ids, len(ids)):
        await store.put_function(function_id, spec())
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_functions(limit=5, cursor=cursor)
        assert len(page.items) <= 5
        seen += [info.function_id for info in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        # A function put before the cursor neither repeats nor shifts later pages.
        await store.put_function(f"a-{len(seen)}", spec())
    assert seen == ids


async def test_a_full_last_page_has_no_next_cursor(store: Store) -> None:
    for n in range(4):
        await store.put_function(f"f{n}", spec())
    page = await store.list_functions(limit=4)
    assert len(page.items) == 4 and page.next_cursor is None
    page = await store.list_functions(limit=3)
    assert page.next_cursor is not None
    rest = await store.list_functions(limit=3, cursor=page.next_cursor)
    assert [i.function_id for i in rest.items] == ["f3"] and rest.next_cursor is None


async def test_page_size_is_bounded_and_cursors_are_checked(store: Store) -> None:
    for limit in (0, -1, MAX_PAGE_SIZE + 1, 10**9):
        with pytest.raises(ValidationError, match="limit"):
            await store.list_functions(limit=limit)
    assert (await store.list_functions(limit=MAX_PAGE_SIZE)).items == ()
    for cursor in ("!!!", "bm90IGFuIGlk", "4pyT"):  # not base64; "not an id"; "✓"
        with pytest.raises(ValidationError, match="cursor"):
            await store.list_functions(cursor=cursor)


async def test_list_filters_on_the_latest_versions_labels(store: Store) -> None:
    await store.put_function("pay-api", spec(team="payments", tier="web"))
    await store.put_function("pay-batch", spec(team="payments", tier="batch"))
    await store.put_function("search", spec(team="search", tier="web"))
    await store.put_function("moved", spec(team="payments"))
    await store.put_function("moved", spec(team="search"))  # the latest version counts

    async def ids(**labels: str) -> list[str]:
        page = await store.list_functions(labels=labels)
        return [info.function_id for info in page.items]

    assert await ids(team="payments") == ["pay-api", "pay-batch"]
    assert await ids(team="search") == ["moved", "search"]
    assert await ids(team="payments", tier="web") == ["pay-api"]
    assert await ids(tier="none") == []
    assert len(await ids()) == 4
    await store.delete_function("pay-api")
    assert await ids(team="payments") == ["pay-batch"]
    first = await store.list_functions(labels={"team": "search"}, limit=1)
    assert first.next_cursor is not None
    second = await store.list_functions(labels={"team": "search"}, limit=1,
                                        cursor=first.next_cursor)
    assert [i.function_id for i in second.items] == ["search"]


async def test_a_deleted_function_is_gone_until_put_again(store: Store) -> None:
    for n in range(3):
        await store.put_function("phoenix", spec(f"life one, v{n + 1}"))
    await store.count_invocation("phoenix", 3, "ok")
    old = await store.get_function("phoenix")
    await store.delete_function("phoenix")

    with pytest.raises(NotFound):
        await store.get_function("phoenix")
    with pytest.raises(NotFound):
        await store.get_version("phoenix", 1)
    with pytest.raises(NotFound):
        await store.delete_function("phoenix")
    assert (await store.list_functions()).items == ()
    # A call in flight when it was deleted still finishes and counts.
    await store.count_invocation("phoenix", 3, "ok")

    again = await store.put_function("phoenix", spec("life two"))
    assert again.version == 4  # numbers go on: version 1 still means "life one, v1"
    info = await store.get_function("phoenix")
    assert (info.first_version, info.version_count, list(info.versions)) == (4, 1, [4])
    assert info.created_at == again.created_at > old.created_at
    assert dict(info.invocations) == {}  # the earlier life's calls are not this one's
    for version in (1, 3):
        with pytest.raises(NotFound):
            await store.get_version("phoenix", version)
    assert (await store.get_version("phoenix", 4)).spec.description == "life two"


async def test_invocations_are_counted_per_outcome_over_every_version(store: Store) -> None:
    await store.put_function("counted", spec())
    await store.put_function("counted", spec())
    await store.put_function("other", spec())
    calls = [("counted", 1, "ok")] * 5 + [("counted", 2, "ok")] * 2 + [
        ("counted", 2, "timeout"), ("other", 1, "error")]
    await asyncio.gather(*(store.count_invocation(*call) for call in calls))
    assert dict((await store.get_function("counted")).invocations) == {"ok": 7, "timeout": 1}
    page = await store.list_functions()
    assert [dict(i.invocations) for i in page.items] == [{"ok": 7, "timeout": 1}, {"error": 1}]
    with pytest.raises(NotFound):
        await store.count_invocation("counted", 3, "ok")
    with pytest.raises(NotFound):
        await store.count_invocation("never", 1, "ok")
    for outcome in ("", "OK", "x" * 33, "ok; DROP TABLE functions"):
        with pytest.raises(ValidationError):
            await store.count_invocation("counted", 1, outcome)


async def test_everything_survives_close_and_reopen(backend: Backend) -> None:
    store = await backend.open()
    put = await store.put_function("durable", spec("kept", team="a"))
    await store.count_invocation("durable", 1, "ok")
    await store.put_function("dropped", spec())
    await store.delete_function("dropped")
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.get_function("durable")

    reopened = await backend.open()
    try:
        info = await reopened.get_function("durable")
        assert info.latest == put
        assert dict(info.invocations) == {"ok": 1}
        assert [i.function_id for i in (await reopened.list_functions(
            labels={"team": "a"})).items] == ["durable"]
        with pytest.raises(NotFound):
            await reopened.get_function("dropped")
        assert (await reopened.put_function("durable", spec())).version == 2
    finally:
        await reopened.close()


async def test_unicode_and_large_specs_round_trip(store: Store) -> None:
    big = FunctionSpec(
        command=("python3", "-c", "print('héllo, 世界 🚀')", "\u202eevil", "tab\tnew\nline"),
        image="registry.example/ünïcode:1",
        executor="docker",
        env_vars={f"VAR_{n}": "värde-" + "🙂" * (n % 7) for n in range(500)} | {
            "NUL_INSIDE": "a\x00b", "QUOTES": "'\"\\"},
        timeout_s=2.5,
        memory_mb=512,
        vcpus=2,
        max_concurrency=10,
        description="Ω" * 500_000,  # 1 MB of UTF-8
        labels={"équipe": "paiements", "emoji": "🚀", "empty": ""},
        bundle=BundleRef("ab" * 32, 1234, 56789),
        content_type="text/plain; charset=utf-8",
    )
    put = await store.put_function("big", big)
    assert (await store.get_version("big", 1)).spec == big == put.spec
    fetched = (await store.get_function("big")).latest.spec
    assert fetched == big and fetched.env_vars["NUL_INSIDE"] == "a\x00b"
    page = await store.list_functions(labels={"équipe": "paiements", "emoji": "🚀"})
    assert [i.function_id for i in page.items] == ["big"]
    with pytest.raises(ValidationError):  # a lone surrogate has no UTF-8 form
        await store.put_function("bad", FunctionSpec(command=("x",), description="\ud800"))
    with pytest.raises(NotFound):
        await store.get_function("bad")


async def test_label_filters_are_bounded(store: Store) -> None:
    many = {f"k{n}": "v" for n in range(MAX_LABEL_FILTERS + 1)}
    with pytest.raises(ValidationError, match="labels"):
        await store.list_functions(labels=many)
    await store.put_function("tagged", spec(**dict(list(many.items())[:MAX_LABEL_FILTERS])))
    page = await store.list_functions(labels=dict(list(many.items())[:MAX_LABEL_FILTERS]))
    assert [i.function_id for i in page.items] == ["tagged"]


async def test_cancelled_calls_leave_no_gap_and_close_waits_for_them(backend: Backend) -> None:
    # The caller owns the deadline: a put cut off at any point returns at
    # once, and its transaction either happens whole or not at all.
    store = await backend.open()

    async def put_with_deadline(n: int, step_s: float) -> int | None:
        try:
            async with asyncio.timeout(step_s * n):
                return (await store.put_function("cut", spec(f"put {n}"))).version
        except TimeoutError:
            return None

    results: list[int | None] = []
    # Deadlines from 0 to 1.2 s: cut before, inside and after the transaction.
    for step_s in (0.0002, 0.0005, 0.001, 0.002, 0.004, 0.016, 0.064):
        results += await asyncio.gather(*(put_with_deadline(n, step_s) for n in range(20)))
    assert None in results and any(v is not None for v in results)
    await store.close()  # waits for the transactions whose callers stopped waiting

    store = await backend.open()
    try:
        last = await store.put_function("cut", spec("after"))
        finished = {v for v in results if v is not None}
        assert len(finished) == len(results) - results.count(None)  # no number given twice
        assert finished <= set(range(1, last.version))
        for version in range(1, last.version):  # no gap: every number names a whole version
            assert (await store.get_version("cut", version)).spec.description.startswith("put ")
        assert (await store.get_function("cut")).latest == last
    finally:
        await store.close()


@pytest.mark.parametrize("labels", [
    {"": "empty key"}, {"k" * 129: "v"}, {"k": "v" * 257}, {f"k{n}": "v" for n in range(65)}])
def test_labels_are_bounded_to_what_the_index_holds(labels: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="label"):
        FunctionSpec(command=("x",), labels=labels)


async def test_the_largest_labels_are_stored_and_found(store: Store) -> None:
    labels = {("🔑" * 126) + f"{n:02x}": "🚀" * 256 for n in range(64)}  # 4-byte characters
    await store.put_function("maximal", FunctionSpec(command=("x",), labels=labels))
    key, value = next(iter(labels.items()))
    page = await store.list_functions(labels={key: value})
    assert [i.function_id for i in page.items] == ["maximal"]
