"""What the gateway answers, as typed models: the OpenAPI document is generated from them.

The hot path never builds these models (it sends ``InvocationResult.to_json()``
through orjson); ``tests/unit/test_openapi.py`` holds every shape the code
can send against them, so the document cannot drift from the answers.
The request model, ``faas.models.InvokeRequest``, is shared with the orchestrator.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from faas.secrets.names import MAX_SECRETS_PER_FUNCTION, SECRET_NAME_PATTERN, SECRETS_DIR

SecretName = Annotated[str, StringConstraints(pattern=f"^{SECRET_NAME_PATTERN.pattern}$")]


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


class SpecProblems(ErrorBody):
    """A spec refused: every problem, each ``"field: what is wrong"``."""

    problems: list[str]


class FunctionSpecBody(BaseModel):
    """A function's spec as ``PUT /functions/{id}`` takes it (unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] = Field(min_length=1, description="argv; command[0] not empty")
    image: str | None = Field(default=None, description="image, docker tier")
    executor: str | None = Field(default=None, description="tier; null: the server's default")
    env_vars: dict[str, str] = Field(default_factory=dict,
                                     description="non-secret environment (stored in clear)")
    timeout_s: float | None = Field(default=None, gt=0, description="deadline, seconds")
    memory_mb: int | None = Field(default=None, ge=16)
    vcpus: int | None = Field(default=None, ge=1)
    max_concurrency: int | None = Field(default=None, ge=1,
                                        description="calls at once; more wait or get 429")
    description: str = Field(default="", max_length=1024)
    labels: dict[str, str] = Field(default_factory=dict, description="at most 64")
    content_type: str = Field(default="application/octet-stream",
                              description="the raw route's response Content-Type")
    max_attempts: int | None = Field(default=None, ge=1, le=10, description=(
        "attempts per call; null: 1 for sync calls, 3 for async ones"))
    retry_timeouts: bool = Field(default=False, description="retry a call that timed out")
    retry_failures: bool = Field(default=False,
                                 description="retry a call whose command exited non-zero")
    secrets: list[SecretName] = Field(
        default_factory=list, max_length=MAX_SECRETS_PER_FUNCTION,
        json_schema_extra={"uniqueItems": True},
        description=f"names of the tenant's secrets each call gets, as files under "
                    f"{SECRETS_DIR} (set with PUT /secrets/{{name}})")


class SpecAnswer(_Answer):
    """The stored spec, every key present; null limits mean the server's default."""

    command: list[str]
    image: str | None
    executor: str | None
    env_vars: dict[str, str]
    timeout_s: float | None
    memory_mb: int | None
    vcpus: int | None
    max_concurrency: int | None
    description: str
    labels: dict[str, str]
    content_type: str
    max_attempts: int | None
    retry_timeouts: bool
    retry_failures: bool
    secrets: list[str]


class BundleAnswer(_Answer):
    sha256: str
    packed_bytes: int
    unpacked_bytes: int


class FunctionVersionAnswer(_Answer):
    id: str
    version: int
    created_at: str = Field(description="ISO 8601, UTC")
    spec: SpecAnswer
    bundle: BundleAnswer | None


class FunctionSummary(_Answer):
    id: str
    latest_version: int
    description: str
    labels: dict[str, str]
    created_at: str
    updated_at: str


class FunctionList(_Answer):
    items: list[FunctionSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class FunctionDetail(_Answer):
    id: str
    latest_version: int
    versions: list[int]
    created_at: str
    updated_at: str
    spec: SpecAnswer
    bundle: BundleAnswer | None
    invocations: dict[str, int] = Field(description="outcome -> calls of this life's versions")


class Accepted(_Answer):
    """An asynchronous call was queued (durably): poll ``Location`` for its record. A
    repeated Idempotency-Key answers the first call's id and its status now."""

    invocation_id: str
    status: Literal["queued", "running", "succeeded", "failed", "timed_out", "error",
                    "cancelled"]


class CallbackState(_Answer):
    url: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_error: str | None
    delivered_at: str | None


class InvocationSummary(_Answer):
    """One invocation's record without its output (lists)."""

    id: str = Field(description="32 hex digits")
    request_id: str
    function_id: str
    version: int | None = Field(description="null: an ad hoc call")
    mode: Literal["sync", "async"]
    status: Literal["queued", "running", "succeeded", "failed", "timed_out", "error",
                    "cancelled"]
    accepted_at: str = Field(description="ISO 8601, UTC")
    started_at: str | None
    finished_at: str | None
    queue_wait_ms: float | None
    duration_ms: float | None
    start: dict[str, Any] | None = Field(description="kind (cold/warm/restored), start_ms")
    executor: str | None
    exit_code: int | None
    signal: int | None
    error: str | None
    attempts: int
    max_attempts: int
    truncated: Truncated = Field(description="output cut by the executor or the record cap")
    callback: CallbackState | None


class InvocationAnswer(InvocationSummary):
    """One invocation's record with its output (up to FAAS_RECORD_OUTPUT_BYTES each)."""

    stdout: str = Field(description="UTF-8 (invalid bytes replaced)")
    stderr: str


class InvocationList(_Answer):
    items: list[InvocationSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class SecretValueBody(BaseModel):
    """``PUT /secrets/{name}``: the value, as text or as base64 (exactly one of them)."""

    model_config = ConfigDict(extra="forbid")

    value: str | None = Field(default=None, description="the value as text (stored as UTF-8)")
    value_base64: str | None = Field(default=None, description="the value's bytes, base64")


class SecretAnswer(_Answer):
    """What may be said of a secret. Values are write-only: no answer ever holds one."""

    name: str
    size: int = Field(description="the value's length in bytes")
    created_at: str = Field(description="ISO 8601, UTC")
    updated_at: str = Field(description="ISO 8601, UTC")


class SecretList(_Answer):
    items: list[SecretAnswer]
