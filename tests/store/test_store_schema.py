"""The versioned schema on both engines: create, upgrade with data, refuse newer, race."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from store_backend import Backend

from faas.errors import SchemaTooNew
from faas.store import SCHEMA_VERSION, FunctionSpec
from faas.store.engine import create_engines
from faas.store.migrations import MIGRATIONS, migrate
from faas.store.url import parse_database_url


@asynccontextmanager
async def raw(backend: Backend) -> AsyncIterator[AsyncConnection]:
    """A plain transaction on the test's database, beside the store."""
    target = parse_database_url(backend.database_url, backend.data_dir)
    backend.data_dir.mkdir(mode=0o700, exist_ok=True)
    engines = create_engines(target)
    try:
        async with engines.write.begin() as conn:
            yield conn
    finally:
        await engines.dispose()


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
        alpha = await store.get_function("alpha")
        assert alpha.latest_version == 2 and alpha.latest.spec.description == "alpha two"
        assert alpha.latest.spec.env_vars == {"A": "1"} and alpha.latest.spec.timeout_s == 5
        assert alpha.created_at.timestamp() == 1.0
        assert (await store.get_version("alpha", 1)).spec.labels == {"team": "old"}
        # v2 indexed the labels of each live function's latest version.
        page = await store.list_functions(labels={"team": "payments"})
        assert [i.function_id for i in page.items] == ["alpha", "beta"]
        assert (await store.list_functions(labels={"team": "old"})).items == ()
        # v2's counters work on versions written by v1.
        await store.count_invocation("beta", 1, "ok")
        assert dict((await store.get_function("beta")).invocations) == {"ok": 1}
        assert (await store.put_function("gone", FunctionSpec(command=("x",)))).version == 2
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
