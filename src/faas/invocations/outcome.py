"""How a run ends, as a record's status and fields, and whether it is tried again.

``succeeded``: exit 0; ``failed``: the command's own non-zero exit (or it
could not start); ``timed_out``: the deadline passed (partial output kept);
``error``: the platform failed (the record says only that, with the request
id, as the HTTP answer does). Output is cut to the retention cap here, with
the truncation flags set for what the executor or the cap cut.

Retries: a platform error is tried again while attempts remain; a timeout
only if the function's spec says ``retry_timeouts``; the command's own
failure only if it says ``retry_failures``. Attempts after the first wait
``backoff_us`` (exponential with full jitter).
"""

from __future__ import annotations

import dataclasses
import random

from faas.errors import AdmissionRejected, FaasError, InvocationTimeout, platform_failure
from faas.models import InvocationResult
from faas.store.invocation_records import (
    ERROR,
    FAILED,
    SUCCEEDED,
    TIMED_OUT,
    InvocationRecord,
    Outcome,
    now_us,
)

#: Retry backoff: the first retry waits up to this, doubling per attempt up to the cap.
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0


def from_result(result: InvocationResult, cap: int, status: str | None = None) -> Outcome:
    return Outcome(
        status=status or (SUCCEEDED if result.error is None else FAILED),
        finished_at=now_us(), executor=result.executor or None,
        start_kind=result.start_kind, start_ms=result.start_ms,
        duration_ms=result.duration_ms, exit_code=result.exit_code, signal=result.signal,
        error=result.error, stdout=result.stdout[:cap], stderr=result.stderr[:cap],
        stdout_truncated=result.stdout_truncated or len(result.stdout) > cap,
        stderr_truncated=result.stderr_truncated or len(result.stderr) > cap)


def from_error(exc: FaasError, cap: int, request_id: str) -> Outcome:
    if isinstance(exc, InvocationTimeout):
        return dataclasses.replace(from_result(exc.result, cap, TIMED_OUT), error=str(exc))
    message = platform_failure(request_id) if exc.status in (500, 502) else str(exc)
    return Outcome(status=ERROR, finished_at=now_us(), error=message)


def should_retry(record: InvocationRecord, outcome: Outcome,
                 exc: FaasError | None) -> bool:
    """Whether the run that ended with ``outcome`` (attempt ``record.attempts``) is retried."""
    if record.attempts >= record.max_attempts:
        return False
    if outcome.status == ERROR:
        # A call refused for what it is (400s) would fail again; a busy server would not.
        return exc is None or exc.status >= 500 or isinstance(exc, AdmissionRejected)
    if outcome.status == TIMED_OUT:
        return record.retry_timeouts
    if outcome.status == FAILED:
        return record.retry_failures
    return False


def backoff_us(attempts: int, rng: random.Random | None = None) -> int:
    """How long to wait before attempt ``attempts + 1``: uniform in [0, min(cap, base*2^n))."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(attempts - 1, 0))
    return int((rng or random).uniform(0, ceiling) * 1_000_000)
