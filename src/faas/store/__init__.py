"""Where deployed functions live: one storage interface, SQLite or PostgreSQL.

``open_store(database_url, data_dir)`` opens (creating or upgrading the
schema) and returns a ``Store``. ``database_url`` is the value of
``FAAS_DATABASE_URL``: ``None`` means SQLite in ``<data_dir>/faas.db``.
"""

from __future__ import annotations

import os
from pathlib import Path

from faas.errors import StoreUnavailable
from faas.store.engine import create_engines, database_errors
from faas.store.interface import DEFAULT_PAGE_SIZE, MAX_LABEL_FILTERS, MAX_PAGE_SIZE, Store
from faas.store.migrations import HEAD as SCHEMA_VERSION
from faas.store.migrations import migrate
from faas.store.records import (
    FUNCTION_ID_PATTERN,
    BundleRef,
    FunctionInfo,
    FunctionSpec,
    FunctionVersion,
    Page,
)
from faas.store.sql_store import SqlStore
from faas.store.url import parse_database_url

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "FUNCTION_ID_PATTERN",
    "MAX_LABEL_FILTERS",
    "MAX_PAGE_SIZE",
    "SCHEMA_VERSION",
    "BundleRef",
    "FunctionInfo",
    "FunctionSpec",
    "FunctionVersion",
    "Page",
    "Store",
    "open_store",
]


async def open_store(database_url: str | None, data_dir: Path) -> Store:
    """Open the store, creating or upgrading its schema to ``SCHEMA_VERSION``.

    Raises ``ValidationError`` for a bad ``database_url`` (naming
    ``FAAS_DATABASE_URL``), ``SchemaTooNew`` for a database made by a newer
    faas, ``StoreUnavailable`` when it cannot be reached. SQLite's folder is
    created mode 0700 if missing. The caller owns the deadline: a
    PostgreSQL host that drops packets is waited for until it is cancelled.
    """
    target = parse_database_url(database_url, data_dir)
    if target.sqlite_path is not None:
        _prepare_sqlite_folder(target.sqlite_path)
    engines = create_engines(target)
    try:
        async with database_errors(target):
            await migrate(engines.write)
    except BaseException:
        await engines.dispose()
        raise
    return SqlStore(target, engines)


def _prepare_sqlite_folder(path: Path) -> None:
    """Create the database's folder and the database file itself, private (0600);
    refuse a path that cannot be a database file.

    The folder is made 0711 (the data folder also holds code bundles that the
    sandbox uids must traverse to, never list); the file is created 0600
    before SQLite opens it, and SQLite gives its ``-wal``/``-shm`` files the
    database file's mode, so no other host user reads the store. Checked here
    rather than left to the driver: aiosqlite's worker thread reports a failed
    connect to the event loop after the caller has moved on.
    """
    try:
        path.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create the data folder for SQLite ({type(exc).__name__})") from exc
    if path.exists() and not path.is_file():
        raise StoreUnavailable("the SQLite database path exists and is not a file")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create the SQLite database file ({type(exc).__name__})") from exc
