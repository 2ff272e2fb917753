"""The versioned schema on both engines: create, upgrade with data (from v1 and from v2),
refuse newer, race."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from store_backend import Backend, raw

from faas.errors import NotFound, SchemaTooNew
from faas.store import SCHEMA_VERSION, FunctionSpec
from faas.store.engine import create_engines
from faas.store.invocation_records import InvocationRecord, Outcome
from faas.store.migrations import MIGRATIONS, migrate
from faas.store.url import parse_database_url


async def applied_versions(backend: Backend) -> list[int]:
    async with raw(backend) as conn:
        rows = await conn.execute(text("SELECT version FROM schema_version ORDER BY version"))
        return [row[0] for row in rows]


def test_migrations_are_numbered_one_to_head_without_gaps() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
    assert SCHEMA_VERSION >= 2


async def test_opening_an_empty_database_creates_the_head_schema(backend: Backend) -> None:
    store = await backend.open()
    await store.close()
    assert await applied_versions(backend) == list(range(1, SCHEMA_VERSION + 1))
    store = await backend.open()  # opening again applies nothing
    await store.close()
    assert await applied_versions(backend) == list(range(1, SCHEMA_VERSION + 1))


def v1_spec(description: str, labels: dict[str, str]) -> str:
    """A spec as version 1 of the schema stored it (spec format 1)."""
    return orjson.dumps({
        "format": 1, "command": ["python3", "-c", "print(1)"], "image": None,
        "executor": "sandbox", "env_vars": {"A": "1"}, "timeout_s": 5, "memory_mb": 128,
        "vcpus": None, "max_concurrency": None, "description": description,
        "labels": labels, "bundle": None, "content_type": None}).decode()


async def test_a_version_one_database_with_data_is_upgraded(backend: Backend) -> None:
    target = parse_database_url(backend.database_url, backend.data_dir)
    backend.data_dir.mkdir(mode=0o700)
    engines = create_engines(target)
    try:
        assert await migrate(engines.write, target=1) == 1
    finally:
        await engines.dispose()
    async with raw(backend) as conn:
        rows: list[tuple[str, int, int, int | None]] = [
            ("alpha", 2, 1, None), ("beta", 1, 1, None), ("gone", 1, 1, 2_000_000)]
        for function_id, latest, first, deleted in rows:
            await conn.execute(text(
                "INSERT INTO functions (id, latest_version, first_version, created_at, "
                "updated_at, deleted_at) VALUES (:id, :latest, :first, 1000000, 2000000, :del)"),
                {"id": function_id, "latest": latest, "first": first, "del": deleted})
        versions: list[dict[str, Any]] = [
            {"f": "alpha", "v": 1, "s": v1_spec("alpha one", {"team": "old"})},
            {"f": "alpha", "v": 2, "s": v1_spec("alpha two", {"team": "payments"})},
            {"f": "beta", "v": 1, "s": v1_spec("beta", {"team": "payments", "tier": "web"})},
            {"f": "gone", "v": 1, "s": v1_spec("gone", {"team": "payments"})}]
        await conn.execute(text(
            "INSERT INTO function_versions (function_id, version, spec, created_at) "
            "VALUES (:f, :v, :s, 1500000)"), versions)
    assert await applied_versions(backend) == [1]

    store = await backend.open()
    try:
        assert await applied_versions(backend) == list(range(1, SCHEMA_VERSION + 1))
        alpha = await store.get_function("default/alpha")
        assert alpha.latest_version == 2 and alpha.latest.spec.description == "alpha two"
        assert alpha.latest.spec.env_vars == {"A": "1"} and alpha.latest.spec.timeout_s == 5
        assert alpha.created_at.timestamp() == 1.0
        assert (await store.get_version("default/alpha", 1)).spec.labels == {"team": "old"}
        # v2 indexed the labels of each live function's latest version.
        page = await store.list_functions(labels={"team": "payments"})
        assert [i.function_id for i in page.items] == ["default/alpha", "default/beta"]
        assert (await store.list_functions(labels={"team": "old"})).items == ()
        # v2's counters work on versions written by v1.
        await store.count_invocation("default/beta", 1, "ok")
        assert dict((await store.get_function("default/beta")).invocations) == {"ok": 1}
        assert (await store.put_function("default/gone", FunctionSpec(command=("x",)))
                ).version == 2
        # v4: every function is the default tenant's, under its qualified id.
        with pytest.raises(NotFound):
            await store.get_function("alpha")
    finally:
        await store.close()


async def test_a_database_newer_than_the_code_is_refused_untouched(backend: Backend) -> None:
    store = await backend.open()
    await store.put_function("kept", FunctionSpec(command=("x",)))
    await store.close()
    newer = SCHEMA_VERSION + 1
    async with raw(backend) as conn:
        await conn.execute(text(
            "INSERT INTO schema_version (version, description, applied_at) "
            "VALUES (:v, 'from the future', 0)"), {"v": newer})

    with pytest.raises(SchemaTooNew, match=rf"version {newer}, newer than .*version "
                                           rf"{SCHEMA_VERSION}"):
        await backend.open()
    assert await applied_versions(backend) == [*range(1, SCHEMA_VERSION + 1), newer]
    async with raw(backend) as conn:
        assert (await conn.execute(text("SELECT id FROM functions"))).scalars().all() == ["kept"]


async def test_concurrent_openers_apply_each_migration_once(backend: Backend) -> None:
    # Several servers starting at once against one empty database.
    results = await asyncio.gather(*(backend.open() for _ in range(6)), return_exceptions=True)
    opened = [r for r in results if not isinstance(r, BaseException)]
    try:
        assert len(opened) == 6, [r for r in results if isinstance(r, BaseException)]
        assert await applied_versions(backend) == list(range(1, SCHEMA_VERSION + 1))
        put = await opened[0].put_function("shared", FunctionSpec(command=("x",)))
        assert (await opened[5].get_function("shared")).latest == put
    finally:
        for store in opened:
            await store.close()


async def test_concurrent_openers_in_separate_processes(backend: Backend, tmp_path: Path) -> None:
    # Two server processes, not two tasks: each its own interpreter and pool.
    script = tmp_path / "opener.py"
    script.write_text(
        "import asyncio, sys\nfrom pathlib import Path\nfrom faas.store import open_store\n"
        "async def main():\n"
        "    url = sys.argv[1] or None\n"
        "    store = await open_store(url, Path(sys.argv[2]))\n"
        "    await store.close()\n"
        "asyncio.run(main())\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, str(script), backend.database_url or "", str(backend.data_dir),
        env=env, stderr=asyncio.subprocess.PIPE) for _ in range(3)]
    outputs = [await proc.communicate() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    assert await applied_versions(backend) == list(range(1, SCHEMA_VERSION + 1))


async def test_a_version_two_database_with_data_is_upgraded(backend: Backend) -> None:
    target = parse_database_url(backend.database_url, backend.data_dir)
    backend.data_dir.mkdir(mode=0o700)
    engines = create_engines(target)
    try:
        assert await migrate(engines.write, target=2) == 2
    finally:
        await engines.dispose()
    async with raw(backend) as conn:
        await conn.execute(text(
            "INSERT INTO functions (id, latest_version, first_version, created_at, updated_at) "
            "VALUES ('old', 1, 1, 1000000, 1000000)"))
        # A spec written before max_attempts, retry_timeouts and retry_failures existed.
        await conn.execute(text(
            "INSERT INTO function_versions (function_id, version, spec, created_at) "
            "VALUES ('old', 1, :s, 1000000)"), {"s": v1_spec("old", {"team": "core"})})
        await conn.execute(text(
            "INSERT INTO function_labels (function_id, label_key, label_value) "
            "VALUES ('old', 'team', 'core')"))
        await conn.execute(text(
            "INSERT INTO invocation_counts (function_id, version, outcome, invocations) "
            "VALUES ('old', 1, 'ok', 41)"))
    assert await applied_versions(backend) == [1, 2]

    store = await backend.open()
    try:
        assert await applied_versions(backend) == list(range(1, SCHEMA_VERSION + 1))
        spec = (await store.get_version("default/old", 1)).spec
        assert (spec.max_attempts, spec.retry_timeouts, spec.retry_failures) == (
            None, False, False)
        assert spec.description == "old" and spec.labels == {"team": "core"}
        await store.count_invocation("default/old", 1, "ok")
        assert dict((await store.get_function("default/old")).invocations) == {"ok": 42}
        page = await store.list_functions(labels={"team": "core"})
        assert [i.function_id for i in page.items] == ["default/old"]
        # The new keys are stored by the new code.
        put = await store.put_function("default/old", FunctionSpec(
            command=("x",), max_attempts=4, retry_timeouts=True, retry_failures=True))
        spec = (await store.get_version("default/old", put.version)).spec
        assert (spec.max_attempts, spec.retry_timeouts, spec.retry_failures) == (4, True, True)

        # The invocation tables v3 added work.
        call = InvocationRecord(id=uuid.uuid4().hex, request_id="r", function_id="old",
                                version=1, mode="async", status="queued", accepted_at=1,
                                request=b"{}", callback_url="https://x/y")
        assert await store.invocations.enqueue(
            call, idempotency_key="k", key_ttl_us=10**9, max_queued=10) == (call.id, True)
        assert await store.invocations.enqueue(
            replace(call, id=uuid.uuid4().hex), idempotency_key="k", key_ttl_us=10**9,
            max_queued=10) == (call.id, False)
        [claimed] = await store.invocations.claim("owner", 5)
        assert claimed.id == call.id
        assert await store.invocations.settle([(call.id, "owner", Outcome(
            status="succeeded", finished_at=2, stdout=b"\xff"))]) == {call.id}
        got = await store.invocations.get(call.id)
        assert (got.status, got.stdout, got.callback_state) == ("succeeded", b"\xff", "pending")
        assert [r.id for r in (await store.invocations.list_records()).items] == [call.id]
    finally:
        await store.close()
