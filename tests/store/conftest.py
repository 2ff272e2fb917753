"""Fixtures of the store tests: each test runs on SQLite and on a private PostgreSQL.

The PostgreSQL cluster is started once per session (``tests/pg_cluster.py``)
and each test gets a database of its own, dropped afterwards. PostgreSQL is
required, not optional: if it cannot start, its tests error with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from store_backend import Backend

from faas.store import Store
from pg_cluster import PgCluster, create_database, drop_database, running_cluster

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(params=ENGINES)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", None, tmp_path / "data")
        return
    cluster: PgCluster = request.getfixturevalue("pg")
    name = f"t_{uuid.uuid4().hex}"
    url = await create_database(cluster, name)
    yield Backend("postgresql", url, tmp_path / "data")
    await drop_database(cluster, name)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = await backend.open()
    yield opened
    await opened.close()
