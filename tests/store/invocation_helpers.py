"""Building blocks of the invocation store tests (a module of its own: test folders are not
packages, so tests import it by bare name, as they do ``store_backend``)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from sqlalchemy import text
from store_backend import Backend, raw

from faas.store.invocation_records import QUEUED, InvocationRecord, Outcome, now_us

#: Far more than any test needs: the queue bound is not what these tests are about.
ROOMY = 1_000_000


def new_id() -> str:
    return uuid.uuid4().hex


def queued(function_id: str = "fn", *, accepted_at: int | None = None,
           **fields: Any) -> InvocationRecord:
    """A queued async call of ``function_id``, accepted ``accepted_at`` (default: now),
    with ``request_bytes`` as ``enqueue`` stores it."""
    request = fields.pop("request", b'{"body": "x"}')
    return InvocationRecord(
        id=fields.pop("id") if "id" in fields else new_id(),
        request_id=fields.pop("request_id", "req"),
        function_id=function_id, version=fields.pop("version", 1), mode="async",
        status=QUEUED, accepted_at=now_us() if accepted_at is None else accepted_at,
        request=request, request_bytes=len(request or b""), **fields)


def ended(status: str = "succeeded", *, function_id: str = "fn", accepted_at: int | None = None,
          **fields: Any) -> InvocationRecord:
    """A final record of a sync call, as ``settle`` inserts one."""
    at = now_us() if accepted_at is None else accepted_at
    record = queued(function_id, accepted_at=at, request=None)
    return replace(record, mode="sync", status=status, started_at=at,
                   finished_at=fields.pop("finished_at", at + 1000), attempts=1, **fields)


def outcome(status: str = "succeeded", **fields: Any) -> Outcome:
    return Outcome(status=status, finished_at=fields.pop("finished_at", now_us()), **fields)




COUNTS = {"invocations": text("SELECT COUNT(*) FROM invocations"),
          "idempotency_keys": text("SELECT COUNT(*) FROM idempotency_keys")}


async def count_rows(backend: Backend, table: str) -> int:
    async with raw(backend) as conn:
        return int((await conn.execute(COUNTS[table])).scalar_one())
