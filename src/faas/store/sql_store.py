"""The store on SQLAlchemy Core: one implementation for SQLite and PostgreSQL.

Each method is one transaction. The only statements that differ between the
engines are the upserts (``INSERT ... ON CONFLICT``, from each dialect's
``insert``); everything else is portable Core.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections import defaultdict
from collections.abc import Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, TypeVar

from sqlalchemy import Row, and_, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from faas.errors import NotFound, StoreUnavailable, ValidationError
from faas.store.engine import Engines, database_errors
from faas.store.interface import DEFAULT_PAGE_SIZE, MAX_LABEL_FILTERS, MAX_PAGE_SIZE
from faas.store.invocation_store import SqlInvocations
from faas.store.records import (
    MAX_VERSION,
    FunctionInfo,
    FunctionSpec,
    FunctionVersion,
    Page,
    check_function_id,
    check_outcome,
    spec_from_json,
    spec_to_json,
)
from faas.store.secret_store import SqlSecrets
from faas.store.tables import function_labels, function_versions, functions, invocation_counts
from faas.store.tenant_store import SqlTenants
from faas.store.url import DatabaseTarget

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = and_(function_versions.c.function_id == functions.c.id,
               function_versions.c.version == functions.c.latest_version)
_FUNCTION_COLUMNS = (functions.c.id, functions.c.first_version, functions.c.created_at,
                     functions.c.updated_at, function_versions.c.version,
                     function_versions.c.spec, function_versions.c.created_at.label("v_created"))


def _now_us() -> int:
    return time.time_ns() // 1000


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _check_version(version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or not (
            1 <= version <= MAX_VERSION):
        raise ValidationError(f"a version is an integer from 1 to {MAX_VERSION}")


def encode_cursor(function_id: str) -> str:
    return base64.urlsafe_b64encode(function_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return check_function_id(raw.decode("ascii"))
    except (binascii.Error, UnicodeDecodeError, ValueError, ValidationError):
        raise ValidationError("cursor is not one this server handed out") from None


class SqlStore:
    """``Store`` on one database; build it with ``faas.store.open_store``."""

    def __init__(self, target: DatabaseTarget, engines: Engines) -> None:
        self._target = target
        self._engines = engines
        self._closed = False
        self._in_flight: set[asyncio.Future[Any]] = set()
        dialect = sqlite if target.engine == "sqlite" else postgresql
        self._insert = dialect.insert
        #: invocation records and the async queue, on the same engines
        self.invocations = SqlInvocations(target, engines, self._shielded)
        self.tenants = SqlTenants(target, engines, self._shielded)
        self.secrets = SqlSecrets(target, engines, self._shielded)

    @property
    def engine_name(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._target.engine

    async def _shielded(self, work: Coroutine[Any, Any, T]) -> T:
        """Run one transaction to its end even if the caller stops waiting.

        The caller's deadline still holds: a cancelled caller gets its
        ``CancelledError`` at once. But the transaction itself is never
        cancelled half-way (a driver cancelled mid-statement may leave its
        connection holding SQLite's write lock); it commits or rolls back in
        the background, and ``close`` waits for it.
        """
        if self._closed:
            work.close()
            raise StoreUnavailable("the store is closed")
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._forget)
        return await asyncio.shield(task)

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that stopped waiting cannot see it

    async def put_function(self, function_id: str, spec: FunctionSpec) -> FunctionVersion:
        check_function_id(function_id)
        spec_json = spec_to_json(spec)
        now = _now_us()
        bundle_bytes = spec.bundle.packed_bytes if spec.bundle is not None else 0
        insert = self._insert(functions).values(
            id=function_id, latest_version=1, first_version=1, created_at=now, updated_at=now,
            deleted_at=None, bundle_bytes=bundle_bytes)
        # Every right-hand side reads the row as it was: a deleted function
        # starts a new life at the number after its last version.
        revived = functions.c.deleted_at.is_not(None)
        upsert = insert.on_conflict_do_update(
            index_elements=[functions.c.id],
            set_={
                "latest_version": functions.c.latest_version + 1,
                "first_version": case((revived, functions.c.latest_version + 1),
                                      else_=functions.c.first_version),
                "created_at": case((revived, now), else_=functions.c.created_at),
                # Puts that raced commit in lock order, not clock order: never go back.
                "updated_at": case((functions.c.updated_at > now, functions.c.updated_at),
                                   else_=now),
                "deleted_at": None,
                "bundle_bytes": bundle_bytes,
            },
        ).returning(functions.c.latest_version)

        async def put() -> FunctionVersion:
            async with database_errors(self._target), self._engines.begin_write() as conn:
                version = (await conn.execute(upsert)).scalar_one()
                await conn.execute(function_versions.insert().values(
                    function_id=function_id, version=version, spec=spec_json, created_at=now))
                await self._replace_labels(conn, function_id, spec.labels)
            return FunctionVersion(function_id, version, spec, _time(now))

        return await self._shielded(put())

    async def tenant_usage(self, tenant: str, *,
                           excluding: str | None = None) -> tuple[int, int]:
        """``(live functions, their packed bundle bytes)`` of ``tenant``: the ids in its
        range (``tenant/`` up to ``tenant0``, '0' being the character after '/'), but
        ``excluding`` (a function about to be replaced by a redeploy)."""
        query = (select(func.count(), func.coalesce(func.sum(functions.c.bundle_bytes), 0))
                 .where(functions.c.id >= f"{tenant}/", functions.c.id < f"{tenant}0",
                        functions.c.deleted_at.is_(None)))
        if excluding is not None:
            query = query.where(functions.c.id != excluding)

        async def usage() -> tuple[int, int]:
            async with database_errors(self._target), self._engines.read.begin() as conn:
                count, total = (await conn.execute(query)).one()
            return int(count), int(total)

        return await self._shielded(usage())

    async def _replace_labels(self, conn: AsyncConnection, function_id: str,
                              labels: Mapping[str, str]) -> None:
        await conn.execute(function_labels.delete().where(
            function_labels.c.function_id == function_id))
        if labels:
            await conn.execute(function_labels.insert(), [
                {"function_id": function_id, "label_key": key, "label_value": value}
                for key, value in labels.items()])

    async def get_function(self, function_id: str) -> FunctionInfo:
        check_function_id(function_id)
        query = (select(*_FUNCTION_COLUMNS).join(function_versions, _LATEST)
                 .where(functions.c.id == function_id, functions.c.deleted_at.is_(None)))

        async def get() -> FunctionInfo:
            async with database_errors(self._target), self._engines.read.begin() as conn:
                row = (await conn.execute(query)).one_or_none()
                if row is None:
                    raise NotFound(f"no function {function_id!r}")
                counts = await self._counts(conn, [function_id])
            return self._info(row, counts)

        return await self._shielded(get())

    async def get_version(self, function_id: str, version: int) -> FunctionVersion:
        check_function_id(function_id)
        _check_version(version)
        query = (select(function_versions.c.spec, function_versions.c.created_at)
                 .join(functions, functions.c.id == function_versions.c.function_id)
                 .where(function_versions.c.function_id == function_id,
                        function_versions.c.version == version,
                        function_versions.c.version >= functions.c.first_version,
                        functions.c.deleted_at.is_(None)))

        async def get() -> FunctionVersion:
            async with database_errors(self._target), self._engines.read.begin() as conn:
                row = (await conn.execute(query)).one_or_none()
            if row is None:
                raise NotFound(f"function {function_id!r} has no version {version}")
            return FunctionVersion(function_id, version, spec_from_json(row.spec),
                                   _time(row.created_at))

        return await self._shielded(get())

    async def list_functions(self, *, labels: Mapping[str, str] | None = None,
                             limit: int = DEFAULT_PAGE_SIZE,
                             cursor: str | None = None, tenant: str | None = None) -> Page:
        if isinstance(limit, bool) or not isinstance(limit, int) or not (
                1 <= limit <= MAX_PAGE_SIZE):
            raise ValidationError(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}")
        query = (select(*_FUNCTION_COLUMNS).join(function_versions, _LATEST)
                 .where(functions.c.deleted_at.is_(None)))
        if labels and len(labels) > MAX_LABEL_FILTERS:
            raise ValidationError(f"at most {MAX_LABEL_FILTERS} labels may be filtered on")
        for key, value in (labels or {}).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValidationError("a label filter maps strings to strings")
            query = query.where(functions.c.id.in_(
                select(function_labels.c.function_id).where(
                    function_labels.c.label_key == key, function_labels.c.label_value == value)))
        if tenant is not None:
            # The tenant's qualified ids, "<tenant>/...": '0' is the byte after '/'.
            query = query.where(functions.c.id >= f"{tenant}/", functions.c.id < f"{tenant}0")
        if cursor is not None:
            query = query.where(functions.c.id > decode_cursor(cursor))
        query = query.order_by(functions.c.id).limit(limit + 1)

        async def list_page() -> Page:
            async with database_errors(self._target), self._engines.read.begin() as conn:
                rows = (await conn.execute(query)).all()
                page = rows[:limit]
                counts = await self._counts(conn, [row.id for row in page])
            next_cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
            return Page(tuple(self._info(row, counts) for row in page), next_cursor)

        return await self._shielded(list_page())

    async def delete_function(self, function_id: str) -> None:
        check_function_id(function_id)
        now = _now_us()
        hide = (update(functions)
                .where(functions.c.id == function_id, functions.c.deleted_at.is_(None))
                .values(deleted_at=now, updated_at=now))

        async def delete() -> None:
            async with database_errors(self._target), self._engines.begin_write() as conn:
                if (await conn.execute(hide)).rowcount != 1:
                    raise NotFound(f"no function {function_id!r}")
                await self._replace_labels(conn, function_id, {})

        await self._shielded(delete())

    async def count_invocation(self, function_id: str, version: int, outcome: str) -> None:
        check_function_id(function_id)
        _check_version(version)
        check_outcome(outcome)
        insert = self._insert(invocation_counts).values(
            function_id=function_id, version=version, outcome=outcome, invocations=1)
        upsert = insert.on_conflict_do_update(
            index_elements=[invocation_counts.c.function_id, invocation_counts.c.version,
                            invocation_counts.c.outcome],
            set_={"invocations": invocation_counts.c.invocations + 1})

        async def count() -> None:
            async with database_errors(self._target):
                try:
                    async with self._engines.begin_write() as conn:
                        await conn.execute(upsert)
                except IntegrityError:  # the foreign key: no such version
                    raise NotFound(
                        f"function {function_id!r} has no version {version}") from None

        await self._shielded(count())

    async def _counts(self, conn: AsyncConnection,
                      function_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """function id -> outcome -> invocations, over the versions of its current life."""
        if not function_ids:
            return {}
        query = (select(invocation_counts.c.function_id, invocation_counts.c.outcome,
                        func.sum(invocation_counts.c.invocations))
                 .join(functions, functions.c.id == invocation_counts.c.function_id)
                 .where(invocation_counts.c.function_id.in_(function_ids),
                        invocation_counts.c.version >= functions.c.first_version)
                 .group_by(invocation_counts.c.function_id, invocation_counts.c.outcome))
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for function_id, outcome, total in await conn.execute(query):
            counts[function_id][outcome] = int(total)
        return counts

    @staticmethod
    def _info(row: Row[*tuple[Any, ...]],
              counts: Mapping[str, Mapping[str, int]]) -> FunctionInfo:
        latest = FunctionVersion(row.id, row.version, spec_from_json(row.spec),
                                 _time(row.v_created))
        return FunctionInfo(row.id, latest, row.first_version, _time(row.created_at),
                            _time(row.updated_at),
                            MappingProxyType(dict(sorted(counts.get(row.id, {}).items()))))

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            # Transactions whose callers stopped waiting finish first.
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            await self._engines.dispose()

