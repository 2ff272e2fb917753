"""SQLAlchemy engines for one database, and the translation of its errors.

SQLite: every connection is put in WAL mode (readers never wait for the
writer) with a busy timeout, foreign keys on, and the driver's own
transaction handling off so SQLAlchemy's ``BEGIN`` is the real one: reads
begin deferred, writes ``BEGIN IMMEDIATE`` (they take the write lock first
and wait up to the busy timeout, instead of failing when a read-then-write
transaction loses a race). PostgreSQL: reads run in ``REPEATABLE READ``
(one snapshot for the several statements of a read), writes in the default
``READ COMMITTED``, where row locks of ``INSERT ... ON CONFLICT`` serialise
writers of one function.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from faas.errors import Conflict, FaasError, StoreUnavailable
from faas.store.url import DatabaseTarget

#: How long a SQLite writer waits for another's lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 10_000
_WRITE = "faas_write"
#: Exceptions of these modules are the drivers' own: some escape SQLAlchemy's wrapping.
_DRIVER_MODULES = {"asyncpg", "sqlite3", "aiosqlite"}


@dataclass(frozen=True, slots=True)
class Engines:
    """One connection pool seen two ways: for reads and for writes."""

    read: AsyncEngine
    write: AsyncEngine
    #: the engine that owns the pool (``read`` and ``write`` are views of it)
    base: AsyncEngine
    #: SQLite lets one writer in at a time; the others would sleep in its busy handler in
    #: growing steps (up to 100 ms, failing after the busy timeout: 503s under load).
    #: Queued on this lock instead, each write starts as soon as the one before commits.
    write_turn: asyncio.Lock | None = None

    @asynccontextmanager
    async def begin_write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (after this process's writes before it, on SQLite)."""
        async with (self.write_turn or contextlib.nullcontext()), self.write.begin() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.base.dispose()


def create_engines(target: DatabaseTarget) -> Engines:
    if target.engine == "sqlite":
        engine = create_async_engine(target.url)
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return Engines(read=engine, write=engine.execution_options(**{_WRITE: True}),
                       base=engine, write_turn=asyncio.Lock())
    engine = create_async_engine(target.url, pool_pre_ping=True)
    return Engines(read=engine.execution_options(isolation_level="REPEATABLE READ"),
                   write=engine, base=engine)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # No implicit transactions from the sqlite3 module: _sqlite_begin emits BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (f"busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}", "journal_mode = WAL",
                   "synchronous = NORMAL", "foreign_keys = ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE)
                         else "BEGIN")


def _is_driver_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in _DRIVER_MODULES


@asynccontextmanager
async def database_errors(target: DatabaseTarget) -> AsyncIterator[None]:
    """Turn database and driver exceptions into the platform's; let ours through.

    Messages name the engine, the host and the error's type, never the
    statement, its parameters, a file path or the URL (it may hold a password).
    """
    try:
        yield
    except FaasError:
        raise
    except IntegrityError as exc:
        raise Conflict("the change conflicts with what is stored") from exc
    except (SQLAlchemyError, OSError) as exc:
        raise StoreUnavailable(f"{target.describe()} is unavailable "
                               f"({_cause_name(exc)})") from exc
    except Exception as exc:
        if _is_driver_error(exc):
            raise StoreUnavailable(f"{target.describe()} is unavailable "
                                   f"({_cause_name(exc)})") from exc
        raise


def _cause_name(exc: BaseException) -> str:
    """The name of the innermost error: the driver's (``InvalidPasswordError``), not a wrapper's."""
    for _ in range(8):
        inner = getattr(exc, "orig", None) or exc.__cause__
        if not isinstance(inner, BaseException) or inner is exc:
            break
        exc = inner
    return type(exc).__name__
