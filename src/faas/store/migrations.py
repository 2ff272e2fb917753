"""The versioned schema: an ordered list of migrations, applied on open.

``schema_version`` holds one row per applied migration; the database's
version is the highest. Each migration runs in a transaction of its own,
together with the row that records it, so a crash leaves the database at
the last whole version. Concurrent openers (two servers starting against
one database) serialise on a lock taken first in that transaction: a
transaction-scoped advisory lock on PostgreSQL, the write lock
(``BEGIN IMMEDIATE``) on SQLite. Each re-reads the version under the lock,
so a migration is applied once. A database whose version is newer than
this code's head is refused (``SchemaTooNew``) and left untouched.

Migrations are raw DDL, frozen once released: they must keep producing the
schema their version names, whatever ``tables.py`` (the head) becomes.
Times are microseconds since the epoch (UTC) in BIGINT, identical on both
engines; ids sort bytewise on both (``COLLATE "C"`` on PostgreSQL).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from faas.errors import SchemaTooNew

#: ``pg_advisory_xact_lock`` key of schema migrations (any constant; "faas" in ASCII).
MIGRATION_LOCK_KEY = 0x66616173


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[AsyncConnection, str], Awaitable[None]]


async def _run(conn: AsyncConnection, statements: str) -> None:
    """Run ``;``-separated DDL one statement at a time (asyncpg takes one per call)."""
    for statement in statements.split(";"):
        if statement.strip():
            await conn.execute(text(statement))


def _id_type(dialect: str) -> str:
    return 'TEXT COLLATE "C"' if dialect == "postgresql" else "TEXT"


async def _v1_functions(conn: AsyncConnection, dialect: str) -> None:
    await _run(conn, f"""
        CREATE TABLE functions (
            id {_id_type(dialect)} PRIMARY KEY,
            latest_version INTEGER NOT NULL,
            first_version INTEGER NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            deleted_at BIGINT
        );
        CREATE TABLE function_versions (
            function_id {_id_type(dialect)} NOT NULL REFERENCES functions (id),
            version INTEGER NOT NULL,
            spec TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (function_id, version)
        )""")


async def _v2_labels_and_counts(conn: AsyncConnection, dialect: str) -> None:
    await _run(conn, f"""
        CREATE TABLE function_labels (
            function_id {_id_type(dialect)} NOT NULL REFERENCES functions (id),
            label_key TEXT NOT NULL,
            label_value TEXT NOT NULL,
            PRIMARY KEY (function_id, label_key)
        );
        CREATE INDEX function_labels_by_label
            ON function_labels (label_key, label_value, function_id);
        CREATE TABLE invocation_counts (
            function_id {_id_type(dialect)} NOT NULL,
            version INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            invocations BIGINT NOT NULL,
            PRIMARY KEY (function_id, version, outcome),
            FOREIGN KEY (function_id, version) REFERENCES function_versions (function_id, version)
        )""")
    # Index the labels of the latest version of every live function, from its spec JSON.
    rows = await conn.execute(text("""
        SELECT f.id, v.spec FROM functions f
        JOIN function_versions v ON v.function_id = f.id AND v.version = f.latest_version
        WHERE f.deleted_at IS NULL"""))
    labels = [{"f": function_id, "k": key, "v": value}
              for function_id, spec in rows
              for key, value in orjson.loads(spec).get("labels", {}).items()]
    if labels:
        await conn.execute(text(
            "INSERT INTO function_labels (function_id, label_key, label_value) "
            "VALUES (:f, :k, :v)"), labels)


async def _v3_invocations(conn: AsyncConnection, dialect: str) -> None:
    blob = "BYTEA" if dialect == "postgresql" else "BLOB"
    await _run(conn, f"""
        CREATE TABLE invocations (
            id {_id_type(dialect)} PRIMARY KEY,
            request_id TEXT NOT NULL,
            function_id {_id_type(dialect)} NOT NULL,
            version INTEGER,
            tenant TEXT,
            mode TEXT NOT NULL,
            status TEXT NOT NULL,
            accepted_at BIGINT NOT NULL,
            started_at BIGINT,
            finished_at BIGINT,
            not_before BIGINT NOT NULL,
            owner TEXT,
            attempts INTEGER NOT NULL,
            max_attempts INTEGER NOT NULL,
            retry_timeouts INTEGER NOT NULL,
            retry_failures INTEGER NOT NULL,
            concurrency_cap INTEGER,
            request {blob},
            request_bytes INTEGER NOT NULL,
            executor TEXT,
            start_kind TEXT,
            start_ms DOUBLE PRECISION,
            duration_ms DOUBLE PRECISION,
            exit_code INTEGER,
            signal INTEGER,
            error TEXT,
            stdout {blob},
            stderr {blob},
            stdout_truncated INTEGER NOT NULL,
            stderr_truncated INTEGER NOT NULL,
            output_encoding TEXT NOT NULL,
            callback_url TEXT,
            callback_state TEXT,
            callback_attempts INTEGER NOT NULL,
            callback_next_at BIGINT,
            callback_error TEXT,
            callback_delivered_at BIGINT
        );
        CREATE INDEX invocations_queue ON invocations (status, not_before, accepted_at, id);
        CREATE INDEX invocations_queue_bytes ON invocations (status, request_bytes);
        CREATE INDEX invocations_by_time ON invocations (accepted_at, id);
        CREATE INDEX invocations_by_function ON invocations (function_id, accepted_at, id);
        CREATE INDEX invocations_finished ON invocations (finished_at);
        CREATE INDEX invocations_callbacks ON invocations (callback_state, callback_next_at);
        CREATE TABLE idempotency_keys (
            function_id {_id_type(dialect)} NOT NULL,
            idempotency_key TEXT NOT NULL,
            invocation_id {_id_type(dialect)} NOT NULL,
            expires_at BIGINT NOT NULL,
            PRIMARY KEY (function_id, idempotency_key)
        );
        CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at)""")


async def _v4_tenants(conn: AsyncConnection, dialect: str) -> None:
    blob = "BYTEA" if dialect == "postgresql" else "BLOB"
    ident = _id_type(dialect)
    await _run(conn, f"""
        CREATE TABLE tenants (
            name {ident} PRIMARY KEY,
            created_at BIGINT NOT NULL,
            quotas TEXT NOT NULL
        );
        CREATE TABLE api_keys (
            id {ident} PRIMARY KEY,
            tenant {ident} NOT NULL REFERENCES tenants (name),
            role TEXT NOT NULL,
            name TEXT NOT NULL,
            key_hash {blob} NOT NULL UNIQUE,
            created_at BIGINT NOT NULL,
            expires_at BIGINT,
            revoked_at BIGINT,
            created_by TEXT
        );
        CREATE INDEX api_keys_by_tenant ON api_keys (tenant, id);
        CREATE TABLE secrets (
            tenant {ident} NOT NULL REFERENCES tenants (name),
            name {ident} NOT NULL,
            ciphertext {blob} NOT NULL,
            nonce {blob} NOT NULL,
            key_id TEXT NOT NULL,
            size INTEGER NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (tenant, name)
        );
        CREATE TABLE audit_log (
            id {ident} PRIMARY KEY,
            at BIGINT NOT NULL,
            tenant TEXT NOT NULL,
            actor TEXT,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT
        );
        CREATE INDEX audit_log_by_time ON audit_log (at, id);
        ALTER TABLE functions ADD COLUMN bundle_bytes BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE invocations ADD COLUMN caller TEXT;
        CREATE INDEX invocations_by_tenant ON invocations (tenant, accepted_at, id);
        CREATE INDEX invocations_by_caller ON invocations (caller, accepted_at, id)""")
    now = time.time_ns() // 1000
    await conn.execute(text("INSERT INTO tenants (name, created_at, quotas) "
                            "VALUES ('default', :now, '{}')"), {"now": now})
    # Everything made before tenants belongs to the default tenant, under a qualified id
    # ("default/<id>"). Rows are copied under the new id, their children pointed at the
    # copy, then the originals deleted: no foreign key is ever broken, on either engine.
    rows = list(await conn.execute(text("SELECT id FROM functions")))
    for (old,) in rows:
        new = f"default/{old}"
        await conn.execute(text(
            "INSERT INTO functions (id, latest_version, first_version, created_at, "
            "updated_at, deleted_at) SELECT :new, latest_version, first_version, created_at, "
            "updated_at, deleted_at FROM functions WHERE id = :old"), {"new": new, "old": old})
        await conn.execute(text(
            "INSERT INTO function_versions (function_id, version, spec, created_at) "
            "SELECT :new, version, spec, created_at FROM function_versions "
            "WHERE function_id = :old"), {"new": new, "old": old})
        for statement in ("UPDATE function_labels SET function_id = :new "
                          "WHERE function_id = :old",
                          "UPDATE invocation_counts SET function_id = :new "
                          "WHERE function_id = :old"):
            await conn.execute(text(statement), {"new": new, "old": old})
        await conn.execute(text("DELETE FROM function_versions WHERE function_id = :old"),
                           {"old": old})
        await conn.execute(text("DELETE FROM functions WHERE id = :old"), {"old": old})
    await conn.execute(text(
        "UPDATE invocations SET function_id = 'default/' || function_id "
        "WHERE function_id NOT LIKE '%/%'"))
    await conn.execute(text("UPDATE invocations SET tenant = 'default' WHERE tenant IS NULL"))
    await conn.execute(text(
        "UPDATE idempotency_keys SET function_id = 'default/' || function_id "
        "WHERE function_id NOT LIKE '%/%'"))
    # What each live function's latest version keeps in the bundle store (for quotas).
    sizes = await conn.execute(text("""
        SELECT f.id, v.spec FROM functions f
        JOIN function_versions v ON v.function_id = f.id AND v.version = f.latest_version
        WHERE f.deleted_at IS NULL"""))
    for function_id, spec in list(sizes):
        bundle = orjson.loads(spec).get("bundle") or {}
        if bundle.get("packed_bytes"):
            await conn.execute(text("UPDATE functions SET bundle_bytes = :b WHERE id = :f"),
                               {"b": int(bundle["packed_bytes"]), "f": function_id})


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "functions and their immutable versions", _v1_functions),
    Migration(2, "labels as an indexed table; invocation counts per version and outcome",
              _v2_labels_and_counts),
    Migration(3, "invocation records (the durable async queue) and idempotency keys",
              _v3_invocations),
    Migration(4, "tenants, API keys, secrets and the audit log; functions and records "
                 "owned by a tenant", _v4_tenants),
)
HEAD = MIGRATIONS[-1].version


async def _lock_and_read(conn: AsyncConnection) -> int:
    """Take the migration lock, make sure ``schema_version`` exists, return the version."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": MIGRATION_LOCK_KEY})
    await conn.execute(text(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
        "description TEXT NOT NULL, applied_at BIGINT NOT NULL)"))
    current = (await conn.execute(text("SELECT MAX(version) FROM schema_version"))).scalar()
    return int(current or 0)


async def migrate(engine: AsyncEngine, target: int = HEAD) -> int:
    """Bring the database up to ``target`` (default: head); return the version it is at.

    ``engine`` must begin SQLite transactions with ``BEGIN IMMEDIATE`` (see
    ``engine.write_engine``). Raises ``SchemaTooNew`` for a database newer
    than ``HEAD``; a database already past ``target`` is left as it is.
    """
    while True:
        async with engine.begin() as conn:
            current = await _lock_and_read(conn)
            if current > HEAD:
                raise SchemaTooNew(
                    f"the database's schema is version {current}, newer than this faas "
                    f"knows (version {HEAD}): upgrade faas, or point it at another database")
            if current >= target:
                return current
            migration = MIGRATIONS[current]
            await migration.apply(conn, conn.dialect.name)
            await conn.execute(
                text("INSERT INTO schema_version (version, description, applied_at) "
                     "VALUES (:version, :description, :applied_at)"),
                {"version": migration.version, "description": migration.description,
                 "applied_at": time.time_ns() // 1000})
