"""Fixtures of the integration tests: one private PostgreSQL cluster for the session, and
``database_url``, each test once on SQLite ("") and once on a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from async_support import fresh_database
from pg_cluster import PgCluster, running_cluster


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """"" (SQLite in the server's data folder) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield ""
        return
    with fresh_database(request.getfixturevalue("pg")) as url:
        yield url
