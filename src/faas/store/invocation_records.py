"""What the store keeps of an invocation, as frozen records.

An ``InvocationRecord`` is one row of ``invocations``: the call's identity,
its state, its timings, its outcome and output (already cut to the
retention cap by the caller), and its callback's delivery state. Times are
microseconds since the epoch (UTC). The store checks the shape it relies on;
the invocation service owns the meaning (which status follows which).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass

from faas.errors import ValidationError

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
TIMED_OUT = "timed_out"
ERROR = "error"
CANCELLED = "cancelled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ERROR, CANCELLED)
FINAL = frozenset({SUCCEEDED, FAILED, TIMED_OUT, ERROR, CANCELLED})
MODES = ("sync", "async")

#: Callback delivery states.
CALLBACK_PENDING = "pending"
CALLBACK_DELIVERED = "delivered"
CALLBACK_FAILED = "failed"

#: An invocation id: 32 lowercase hex digits (a uuid4 without dashes).
INVOCATION_ID = re.compile(r"[0-9a-f]{32}")
#: An Idempotency-Key header value.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")

DEFAULT_RECORD_PAGE = 50
MAX_RECORD_PAGE = 200


def now_us() -> int:
    """Now, as the store keeps times: microseconds since the epoch (UTC)."""
    return time.time_ns() // 1000


def check_invocation_id(invocation_id: str) -> str:
    if not isinstance(invocation_id, str) or not INVOCATION_ID.fullmatch(invocation_id):
        raise ValidationError("an invocation id is 32 lowercase hex digits")
    return invocation_id


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
    return status


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    """One invocation, as stored. ``request`` is kept only until the call is final."""

    id: str
    request_id: str
    function_id: str
    version: int | None
    mode: str
    status: str
    accepted_at: int
    max_attempts: int = 1
    retry_timeouts: bool = False
    retry_failures: bool = False
    concurrency_cap: int | None = None
    output_encoding: str = "text"
    request: bytes | None = None
    request_bytes: int = 0
    started_at: int | None = None
    finished_at: int | None = None
    not_before: int = 0
    owner: str | None = None
    attempts: int = 0
    executor: str | None = None
    start_kind: str | None = None
    start_ms: float | None = None
    duration_ms: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    callback_url: str | None = None
    callback_state: str | None = None
    callback_attempts: int = 0
    callback_next_at: int | None = None
    callback_error: str | None = None
    callback_delivered_at: int | None = None
    tenant: str | None = None
    #: the id of the API key that made the call (None: the server ran open)
    caller: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended: what ``finish`` writes over a running record."""

    status: str
    finished_at: int
    executor: str | None = None
    start_kind: str | None = None
    start_ms: float | None = None
    duration_ms: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False


@dataclass(frozen=True, slots=True)
class InvocationPage:
    """One page of ``list``, newest first; pass ``next_cursor`` back for the next one."""

    items: tuple[InvocationRecord, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Recovered:
    """What ``recover`` did with the calls a dead server left running."""

    requeued: tuple[str, ...]
    failed: tuple[str, ...]


def encode_record_cursor(accepted_at: int, invocation_id: str) -> str:
    return base64.urlsafe_b64encode(f"{accepted_at}:{invocation_id}".encode()).decode().rstrip(
        "=")


def decode_record_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        when, _, invocation_id = raw.partition(":")
        if not when.isdigit() or len(when) > 19:
            raise ValueError(when)
        return int(when), check_invocation_id(invocation_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, ValidationError):
        raise ValidationError("cursor is not one this server handed out") from None
