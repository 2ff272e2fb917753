"""Request and result types shared by every layer (the seed's faas-common).

``InvokeRequest`` is the HTTP body as the seed describes it; ``ExecutionSpec``
is what the orchestrator hands an executor (validated, with an absolute
deadline and resolved limits); ``InvocationResult`` is what comes back.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema, field_validator

from faas.secrets.values import Secret, check_secrets

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Bounds on what a request may hand the sandbox's exec (documented in the
#: README). Lambda allows 4 KiB of environment in all; these are generous
#: multiples, far below the kernel's ARG_MAX, so every tier can exec them
#: quickly (runc's environment handling is quadratic in the variable count).
MAX_ARGS = 1024
MAX_ARG_BYTES = 64 * 1024
MAX_ARGV_BYTES = 256 * 1024
MAX_ENV_VARS = 256
MAX_ENV_KEY_BYTES = 256
MAX_ENV_BYTES = 64 * 1024
#: Largest payload accepted as a JSON array of byte values (the seed's form):
#: parsing an array costs 8 bytes of memory an element, so larger payloads
#: must come base64-encoded (like Lambda, whose 6 MB limit counts the JSON).
MAX_PAYLOAD_ARRAY = 1024 * 1024
#: Longest image reference and executor name a request may carry.
MAX_NAME_BYTES = 256

# The JSON schema of what the validators below check (the OpenAPI document is
# generated from this model; tests/unit/test_openapi.py holds the two together).
# Byte totals cannot be said in JSON schema: each string's maxLength (characters)
# is the bound a UTF-8 byte limit implies, and the descriptions give the rest.
_NO_NUL = r"^[^\x00]*$"
_ARG_SCHEMA: dict[str, JsonValue] = {"type": "string", "pattern": _NO_NUL,
                                     "maxLength": MAX_ARG_BYTES}
_ENV_SCHEMA: dict[str, JsonValue] = {
    "type": "string", "maxLength": MAX_ENV_BYTES,
    "pattern": rf"^[A-Za-z_][A-Za-z0-9_]{{0,{MAX_ENV_KEY_BYTES - 1}}}=[^\x00]*$"}
_BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
_PAYLOAD_SCHEMA = WithJsonSchema({"anyOf": [
    {"type": "array", "maxItems": MAX_PAYLOAD_ARRAY,
     "items": {"type": "integer", "minimum": 0, "maximum": 255}},
    {"type": "string", "pattern": _BASE64, "contentEncoding": "base64"},
    {"type": "null"},
]})


def decode_payload(value: Any) -> bytes:
    """Accept the seed's array of byte values, or a base64 string; return bytes."""
    if value is None:
        return b""
    if isinstance(value, str):
        try:
            # Straight from the str: no intermediate ASCII copy of a 8 MiB string.
            return binascii.a2b_base64(value, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("payload string must be valid base64") from exc
    if isinstance(value, list):
        if len(value) > MAX_PAYLOAD_ARRAY:
            raise ValueError(f"a payload array may hold at most {MAX_PAYLOAD_ARRAY} bytes; "
                             "send larger payloads as a base64 string")
        try:
            return bytes(value)
        except TypeError as exc:
            raise ValueError("payload array must hold integers 0-255") from exc
        except ValueError as exc:
            raise ValueError("payload bytes must be in the range 0-255") from exc
    raise ValueError("payload must be an array of byte values (0-255) or a base64 string")


class InvokeRequest(BaseModel):
    """Body of ``POST /functions/{function_id}/invoke``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str | None = Field(default=None, max_length=MAX_NAME_BYTES,
                              description="Image; used by the docker executor")
    command: list[str] = Field(min_length=1, max_length=MAX_ARGS,
                               description=f"argv of the command to run: no NUL bytes, "
                               f"command[0] not empty, at most {MAX_ARG_BYTES} bytes an "
                               f"argument and {MAX_ARGV_BYTES} in all (UTF-8)",
                               json_schema_extra={
                                   "prefixItems": [{**_ARG_SCHEMA, "minLength": 1}],
                                   "items": _ARG_SCHEMA})
    env_vars: list[str] = Field(default_factory=list, max_length=MAX_ENV_VARS,
                                description=f'Environment, "KEY=VALUE" (KEY at most '
                                f"{MAX_ENV_KEY_BYTES} bytes, no NUL in VALUE), at most "
                                f"{MAX_ENV_BYTES} bytes in all (UTF-8)",
                                json_schema_extra={"items": _ENV_SCHEMA})
    payload: Annotated[bytes, _PAYLOAD_SCHEMA] = Field(
        default=b"",
        description="stdin: an array of byte values (JSON integers 0-255) or a base64 string",
    )
    executor: str | None = Field(default=None, max_length=MAX_NAME_BYTES,
                                 description="sandbox | docker | microvm | ...")
    # Strict: true, "5" and "256" are refused rather than read as numbers.
    timeout_s: float | None = Field(default=None, gt=0, allow_inf_nan=False, strict=True,
                                    description="Deadline override, seconds (a JSON number)")
    memory_mb: int | None = Field(default=None, ge=16, le=1 << 30, strict=True,
                                  description="Memory limit override, MiB (a JSON integer: "
                                  "256.0 is refused)")
    vcpus: int | None = Field(default=None, ge=1, le=1024, strict=True,
                              description="vCPUs, microVM tiers (a JSON integer: 2.0 is "
                              "refused)")
    output_encoding: Literal["text", "base64"] = Field(
        default="text", description="base64 adds lossless stdout_base64/stderr_base64"
    )

    @field_validator("payload", mode="before")
    @classmethod
    def _payload(cls, value: Any) -> bytes:
        return decode_payload(value)

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        if not value[0]:
            raise ValueError("command[0] must not be empty")
        if any("\x00" in arg for arg in value):
            raise ValueError("command arguments must not contain NUL bytes")
        sizes = [len(arg.encode("utf-8", "surrogatepass")) for arg in value]
        if max(sizes) > MAX_ARG_BYTES:
            raise ValueError(f"a command argument is longer than {MAX_ARG_BYTES} bytes")
        if sum(sizes) > MAX_ARGV_BYTES:
            raise ValueError(f"the command's arguments exceed {MAX_ARGV_BYTES} bytes in all")
        return value

    @field_validator("env_vars")
    @classmethod
    def _env(cls, value: list[str]) -> list[str]:
        total = 0
        for index, entry in enumerate(value):
            key, sep, val = entry.partition("=")
            if not sep or len(key) > MAX_ENV_KEY_BYTES or not _ENV_KEY.fullmatch(key):
                raise ValueError(
                    f"env_vars[{index}] is not KEY=VALUE with KEY of [A-Za-z_][A-Za-z0-9_]* "
                    f"(at most {MAX_ENV_KEY_BYTES} bytes)")
            if "\x00" in val:
                raise ValueError(f"env_vars[{index}] contains a NUL byte")
            total += len(entry.encode("utf-8", "surrogatepass"))
            if total > MAX_ENV_BYTES:
                raise ValueError(f"env_vars exceed {MAX_ENV_BYTES} bytes in all")
        return value

    def env(self) -> dict[str, str]:
        return dict(entry.split("=", 1) for entry in self.env_vars)


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits for one invocation, already clamped to the server maxima."""

    memory_bytes: int = 256 * 1024 * 1024
    pids: int = 128
    cpu_seconds: int = 30
    file_size_bytes: int = 64 * 1024 * 1024
    tmp_bytes: int = 64 * 1024 * 1024
    output_bytes: int = 1024 * 1024
    vcpus: int = 1


@dataclass(frozen=True, slots=True)
class ExecutionSpec:
    """One invocation as an executor sees it.

    ``deadline`` is absolute, on the ``asyncio`` loop clock
    (``loop.time()``): the caller owns it, the executor enforces it by
    killing the whole sandbox when it passes.
    """

    request_id: str
    function_id: str
    command: tuple[str, ...]
    env: dict[str, str]
    payload: bytes
    deadline: float
    limits: Limits = field(default_factory=Limits)
    image: str | None = None
    #: The deployed function's code: a host folder (the unpacked bundle, see
    #: ``faas.bundles``) every tier shows read-only at ``/function``; None: no code.
    bundle: FunctionBundle | None = None
    #: The call's secrets, each shown as ``/run/secrets/<name>`` (a read-only
    #: file on a tmpfs, readable by the command's user only; never in the
    #: environment or on a command line). ``Secret``'s repr hides the value, so
    #: this spec's repr does too. Checked here (``check_secrets``).
    secrets: tuple[Secret, ...] = ()

    def __post_init__(self) -> None:
        if self.secrets:
            object.__setattr__(self, "secrets", check_secrets(self.secrets))


@dataclass(frozen=True, slots=True)
class FunctionBundle:
    """A deployed function's unpacked code bundle, as an executor mounts it."""

    sha256: str
    path: Path
    unpacked_bytes: int


@dataclass(slots=True)
class InvocationResult:
    """What one invocation produced. ``error`` is ``None`` only for exit 0."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    duration_ms: float = 0.0
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    request_id: str = ""
    executor: str = ""
    # How the sandbox started: "cold" (started for this call), "warm" (taken
    # from a pool of pre-started ones) or "restored" (from a snapshot), and
    # the time spent starting it, like OpenWhisk's initTime. None: not tracked.
    start_kind: str | None = None
    start_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, output_encoding: str = "text") -> dict[str, Any]:
        body: dict[str, Any] = {
            "stdout": self.stdout.decode("utf-8", "replace"),
            "stderr": self.stderr.decode("utf-8", "replace"),
            "error": self.error,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "duration_ms": round(self.duration_ms, 3),
            "timed_out": self.timed_out,
            "truncated": {"stdout": self.stdout_truncated, "stderr": self.stderr_truncated},
            "request_id": self.request_id,
            "executor": self.executor,
        }
        if self.start_kind is not None:
            body["start"] = {"kind": self.start_kind, "start_ms": round(self.start_ms or 0.0, 3),
                             "run_ms": round(max(self.duration_ms - (self.start_ms or 0.0), 0.0),
                                             3)}
        if output_encoding == "base64":
            body["stdout_base64"] = base64.b64encode(self.stdout).decode()
            body["stderr_base64"] = base64.b64encode(self.stderr).decode()
        body.update(self.extra)
        return body
