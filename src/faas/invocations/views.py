"""A record as the API shows it (``GET /invocations/{id}``, lists, callbacks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from faas.functions.views import iso as function_iso
from faas.store.invocation_records import InvocationRecord
from faas.tenancy.principal import unqualify

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(us: int | None) -> str | None:
    """Microseconds since the epoch as the API's ISO 8601 (UTC, ``Z``), or None."""
    if us is None:
        return None
    return function_iso(_EPOCH + timedelta(microseconds=us))


def _ms(start: int | None, end: int | None) -> float | None:
    return None if start is None or end is None else round((end - start) / 1000, 3)


def record_json(record: InvocationRecord, *, output: bool = True) -> dict[str, Any]:
    """The record's JSON; ``output`` False leaves stdout and stderr out (lists)."""
    body: dict[str, Any] = {
        "id": record.id,
        "request_id": record.request_id,
        "function_id": unqualify(record.function_id),
        "version": record.version,
        "mode": record.mode,
        "status": record.status,
        "accepted_at": iso(record.accepted_at),
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
        "queue_wait_ms": _ms(record.accepted_at, record.started_at),
        "duration_ms": None if record.duration_ms is None else round(record.duration_ms, 3),
        "start": None if record.start_kind is None else {
            "kind": record.start_kind, "start_ms": round(record.start_ms or 0.0, 3)},
        "executor": record.executor,
        "exit_code": record.exit_code,
        "signal": record.signal,
        "error": record.error,
        "attempts": record.attempts,
        "max_attempts": record.max_attempts,
        "truncated": {"stdout": record.stdout_truncated, "stderr": record.stderr_truncated},
        "callback": None if record.callback_url is None else {
            "url": record.callback_url, "state": record.callback_state or "pending",
            "attempts": record.callback_attempts, "last_error": record.callback_error,
            "delivered_at": iso(record.callback_delivered_at)},
    }
    if output:
        body["stdout"] = record.stdout.decode("utf-8", "replace")
        body["stderr"] = record.stderr.decode("utf-8", "replace")
    return body
