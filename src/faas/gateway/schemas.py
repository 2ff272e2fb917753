"""What the gateway answers, as typed models: the OpenAPI document is generated from them.

The hot path never builds these models (it sends ``InvocationResult.to_json()``
through orjson); ``tests/unit/test_openapi.py`` holds every shape the code
can send against them, so the document cannot drift from the answers.
The request model, ``faas.models.InvokeRequest``, is shared with the orchestrator.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    # Undocumented keys make the schema check fail rather than pass unseen.
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Answer):
    """Every error answer: a human-readable message, never host paths or internals."""

    error: str


class Truncated(_Answer):
    stdout: bool
    stderr: bool


class StartInfo(_Answer):
    kind: Literal["cold", "warm", "restored"] = Field(
        description="started for this call, taken from a warm pool, or restored from a snapshot")
    start_ms: float
    run_ms: float


class InvokeResult(_Answer):
    """What the command did. ``error`` is null only when it exited 0."""

    stdout: str = Field(description="UTF-8 (invalid bytes replaced)")
    stderr: str
    error: str | None
    exit_code: int | None
    signal: int | None = Field(description="the signal that ended it, if one did")
    duration_ms: float
    timed_out: bool
    truncated: Truncated
    request_id: str
    executor: str
    start: StartInfo | None = Field(default=None, description="tiers that track starts")
    stdout_base64: str | None = Field(default=None, description='output_encoding "base64"')
    stderr_base64: str | None = Field(default=None, description='output_encoding "base64"')
    microvm: dict[str, Any] | None = Field(default=None, description="microVM tiers: the VM")


class TimedOut(InvokeResult):
    """The deadline passed: the output so far, and why."""

    error: str


class Health(_Answer):
    status: Literal["ok"]


class Readiness(_Answer):
    ready: bool
    accepting: bool
    executors: list[str]
    unavailable: list[str] = Field(description="tiers that could not start (names only)")
    default_executor: str
