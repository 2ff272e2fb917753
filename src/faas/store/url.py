"""Which database to open: the ``FAAS_DATABASE_URL`` value, checked and parsed.

Accepted: nothing (SQLite at ``<data_dir>/faas.db``), ``sqlite://`` (the
same), ``sqlite:////absolute/file.db``, and ``postgresql://`` (or
``postgres://``) ``user:password@host:port/dbname`` with the optional query
keys ``host`` (a socket directory), ``ssl`` and ``sslmode`` (the same values:
``disable``, ``prefer``, ``require``, ``verify-ca``, ``verify-full``).
No message here echoes the URL: it may hold a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from faas.errors import ValidationError

SQLITE_FILE = "faas.db"
_SETTING = "FAAS_DATABASE_URL"
_PG_SCHEMES = {"postgresql", "postgres"}
_PG_QUERY_KEYS = {"host", "ssl", "sslmode"}
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """A parsed database location. ``url`` is SQLAlchemy's, with the async driver named."""

    engine: Literal["sqlite", "postgresql"]
    url: URL
    #: The SQLite file (``None`` for PostgreSQL); its folder must exist before opening.
    sqlite_path: Path | None = None

    def describe(self) -> str:
        """Where the database is, for messages: no password, no host path."""
        if self.engine == "sqlite":
            return "SQLite"
        host = self.url.host or "local socket"
        port = f":{self.url.port}" if self.url.port else ""
        return f"PostgreSQL at {host}{port}"


def _invalid(reason: str) -> ValidationError:
    return ValidationError(f"{_SETTING}: {reason}")


def parse_database_url(database_url: str | None, data_dir: Path) -> DatabaseTarget:
    """Check ``database_url`` (``None`` or blank: SQLite in ``data_dir``).

    Raises ``ValidationError`` naming ``FAAS_DATABASE_URL``.
    """
    if database_url is None or not database_url.strip():
        return _sqlite(data_dir / SQLITE_FILE)
    try:
        url = make_url(database_url.strip())
    except (ArgumentError, ValueError):
        # from None: the parse error quotes the whole URL, password included.
        raise _invalid("not a URL of the form scheme://...") from None
    if url.drivername == "sqlite":
        return _parse_sqlite(url, data_dir)
    if url.drivername in _PG_SCHEMES:
        return _parse_postgresql(url)
    scheme = url.drivername if url.drivername.isascii() and len(url.drivername) < 40 else "?"
    raise _invalid(f"unsupported scheme {scheme!r}; use postgresql://... or sqlite://...")


def _sqlite(path: Path) -> DatabaseTarget:
    return DatabaseTarget("sqlite", URL.create("sqlite+aiosqlite", database=str(path)), path)


def _parse_sqlite(url: URL, data_dir: Path) -> DatabaseTarget:
    if url.username or url.password or url.host or url.port or url.query:
        raise _invalid("a sqlite URL takes only a file path: sqlite:////absolute/path.db")
    if not url.database:
        return _sqlite(data_dir / SQLITE_FILE)
    if url.database == ":memory:" or url.database.startswith("file:"):
        raise _invalid("the store needs a SQLite file, not an in-memory or URI database")
    path = Path(url.database)
    if not path.is_absolute():
        raise _invalid("a sqlite URL needs an absolute path: sqlite:////absolute/path.db")
    return _sqlite(path)


def _parse_postgresql(url: URL) -> DatabaseTarget:
    if not url.database:
        raise _invalid("a postgresql URL needs a database name: postgresql://user@host/dbname")
    unknown = set(url.query) - _PG_QUERY_KEYS
    if unknown:
        keys = ", ".join(sorted(k for k in unknown if k.isascii() and len(k) < 40)) or "?"
        raise _invalid(f"unsupported query parameter(s) {keys}; known: host, ssl, sslmode")
    query: dict[str, str] = {}
    for key, value in url.query.items():
        if not isinstance(value, str):
            raise _invalid(f"the query parameter {key} is given more than once")
        if key in ("ssl", "sslmode"):
            if value not in _SSL_MODES:
                raise _invalid(f"{key} must be one of {', '.join(sorted(_SSL_MODES))}")
            query["ssl"] = value
        else:
            query[key] = value
    if not url.host and "host" not in query:
        raise _invalid("a postgresql URL needs a host: postgresql://user@host/dbname")
    return DatabaseTarget("postgresql", url.set(drivername="postgresql+asyncpg", query=query))
