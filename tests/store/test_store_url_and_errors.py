"""FAAS_DATABASE_URL parsing, the SQLite folder, and errors that leak no secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from faas.errors import StoreUnavailable, ValidationError
from faas.store import FunctionSpec, open_store
from faas.store.url import parse_database_url
from pg_cluster import PgCluster, running_cluster

SECRET = "s3cr3t-Pa55word"  # noqa: S105 - a fake, to prove no message carries it


@pytest.mark.parametrize("url", [
    "mysql://u:s3cr3t-Pa55word@db/x",
    "postgresql+psycopg2://u:s3cr3t-Pa55word@db/x",
    "http://u:s3cr3t-Pa55word@db/x",
    "not a url s3cr3t-Pa55word",
    "postgresql://u:s3cr3t-Pa55word@db",  # no database
    "postgresql://u:s3cr3t-Pa55word@db:notaport/x",
    "postgresql://u:s3cr3t-Pa55word@db/x?sslmode=sometimes",
    "postgresql://u:s3cr3t-Pa55word@db/x?options=-c%20search_path%3Devil",
    "postgresql://u:s3cr3t-Pa55word@/x",  # no host at all
    "sqlite:///relative.db",
    "sqlite:///:memory:",
    "sqlite://u:s3cr3t-Pa55word@host/x.db",
])
async def test_bad_urls_are_refused_naming_the_setting_without_the_password(
        url: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="FAAS_DATABASE_URL") as caught:
        await open_store(url, tmp_path)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None or SECRET not in str(caught.value.__cause__)
    assert not (tmp_path / "faas.db").exists()


def test_good_urls_are_parsed(tmp_path: Path) -> None:
    default = parse_database_url(None, tmp_path)
    assert default.engine == "sqlite" and default.sqlite_path == tmp_path / "faas.db"
    assert parse_database_url("  ", tmp_path) == default
    assert parse_database_url("sqlite://", tmp_path) == default
    assert parse_database_url("sqlite:////srv/x/f.db", tmp_path).sqlite_path == Path(
        "/srv/x/f.db")
    pg = parse_database_url("postgres://u:pw@db.internal:6543/faas?sslmode=require", tmp_path)
    assert (pg.engine, pg.url.drivername, pg.url.host, pg.url.port, pg.url.database) == (
        "postgresql", "postgresql+asyncpg", "db.internal", 6543, "faas")
    assert dict(pg.url.query) == {"ssl": "require"}
    assert pg.describe() == "PostgreSQL at db.internal:6543"
    socket = parse_database_url("postgresql://u@/faas?host=/run/postgresql", tmp_path)
    assert dict(socket.url.query) == {"host": "/run/postgresql"}


async def test_the_sqlite_folder_is_made_private_and_holds_the_database(tmp_path: Path) -> None:
    """The folder is traversable but not listable (bundles beside the database must be
    reachable by the sandbox uids); the database file is the server's alone."""
    data_dir = tmp_path / "deep" / "data"
    store = await open_store(None, data_dir)
    await store.close()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o711
    assert (data_dir / "faas.db").is_file()
    assert stat.S_IMODE((data_dir / "faas.db").stat().st_mode) == 0o600
    # WAL mode is a property of the file: it persists.
    header = (data_dir / "faas.db").read_bytes()[:20]
    assert header[18:20] == b"\x02\x02"  # read and write versions 2 = WAL


async def test_an_unusable_sqlite_folder_is_unavailable_without_its_path(tmp_path: Path) -> None:
    blocker = tmp_path / "private-host-path"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(None, blocker / "data")
    assert "private-host-path" not in str(caught.value)
    (tmp_path / "dbdir").mkdir()
    (tmp_path / "dbdir" / "faas.db").mkdir()  # a folder where the file should be
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(None, tmp_path / "dbdir")
    assert str(tmp_path) not in str(caught.value)


async def test_postgresql_that_is_down_is_unavailable_without_the_password(
        tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://faas:{SECRET}@127.0.0.1:{port}/faas"
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(url, tmp_path)
    assert SECRET not in str(caught.value)
    assert str(caught.value) == f"PostgreSQL at 127.0.0.1:{port} is unavailable " \
                                "(ConnectionRefusedError)"


async def test_a_wrong_password_is_unavailable_without_the_password(
        pg: PgCluster, tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="InvalidPasswordError") as caught:
        await open_store(pg.url("postgres", password=SECRET), tmp_path)
    assert SECRET not in str(caught.value) and pg.password not in str(caught.value)


async def test_a_postgresql_that_goes_away_makes_calls_unavailable() -> None:
    # A cluster of this test's own, stopped while a store uses it.
    with running_cluster() as cluster:
        store = await open_store(cluster.url("postgres"), Path("/nonexistent"))
        await store.put_function("f", FunctionSpec(command=("x",)))
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.get_function("f")
        assert cluster.password not in str(caught.value)
        assert f"PostgreSQL at 127.0.0.1:{cluster.port} is unavailable" in str(caught.value)
        with pytest.raises(StoreUnavailable):
            await store.put_function("f", FunctionSpec(command=("x",)))
    finally:
        await store.close()
