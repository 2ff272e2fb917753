"""What the store keeps, as frozen records, and how a spec is written as JSON.

A ``FunctionSpec`` is everything one version of a function fixes; a stored
version never changes. The store checks only the shape it relies on (types,
signs, the function id's alphabet); the API layer owns the platform's limits
(argv sizes, memory bounds, executor names) and checks them before a put.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson

from faas.errors import ValidationError

#: A function id: what ``/functions/{id}`` carries. URL-safe without escaping.
FUNCTION_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: An invocation outcome counted per version ("ok", "error", "timeout", ...).
OUTCOME_PATTERN = re.compile(r"[a-z][a-z_]{0,31}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Labels are indexed (PostgreSQL's btree rows hold at most ~2.7 kB): bounded in characters.
MAX_LABELS = 64
MAX_LABEL_KEY_CHARS = 128
MAX_LABEL_VALUE_CHARS = 256
#: Versions are 32-bit integers in both engines.
MAX_VERSION = 2**31 - 1
#: The spec's JSON layout; a new layout needs a schema migration that rewrites old rows.
SPEC_FORMAT = 1


#: How the store keeps an id: qualified by its tenant (``faas.tenancy.principal``).
STORED_FUNCTION_ID_PATTERN = re.compile(
    r"(?:[a-z0-9][a-z0-9-]{0,31}/)?" + FUNCTION_ID_PATTERN.pattern)


def check_function_id(function_id: str) -> str:
    """A stored function id: a name, qualified with its tenant (``acme/hello``) or not."""
    if not isinstance(function_id, str) or not STORED_FUNCTION_ID_PATTERN.fullmatch(
            function_id):
        raise ValidationError(
            "a function id is 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter "
            "or digit")
    return function_id


def check_outcome(outcome: str) -> str:
    if not isinstance(outcome, str) or not OUTCOME_PATTERN.fullmatch(outcome):
        raise ValidationError("an outcome is 1-32 characters of a-z and _")
    return outcome


def _frozen_str_map(name: str, value: Mapping[str, str]) -> Mapping[str, str]:
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValidationError(f"{name} must map strings to strings")
    return MappingProxyType(dict(value))


def _positive(name: str, value: float | None) -> None:
    if value is not None and (isinstance(value, bool) or not value > 0):
        raise ValidationError(f"{name} must be positive")


@dataclass(frozen=True, slots=True)
class BundleRef:
    """A code bundle by content: the files live elsewhere, addressed by ``sha256``."""

    sha256: str
    packed_bytes: int
    unpacked_bytes: int

    def __post_init__(self) -> None:
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise ValidationError("a bundle's sha256 is 64 lowercase hex digits")
        for name in ("packed_bytes", "unpacked_bytes"):
            size = getattr(self, name)
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ValidationError(f"a bundle's {name} must be a non-negative integer")


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """What one immutable version of a function fixes.

    ``None`` limits mean "the server's default at call time". ``env_vars``
    are non-secret by contract: they are stored in clear.
    """

    command: tuple[str, ...]
    image: str | None = None
    executor: str | None = None
    env_vars: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    memory_mb: int | None = None
    vcpus: int | None = None
    max_concurrency: int | None = None
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    bundle: BundleRef | None = None
    content_type: str | None = None
    #: attempts per call (None: 1 for sync calls, 3 for async ones); platform errors are
    #: retried, timeouts and the command's own failures only if these say so
    max_attempts: int | None = None
    retry_timeouts: bool = False
    retry_failures: bool = False
    #: names of the tenant's secrets a call of this function carries (the values live
    #: sealed in the ``secrets`` table; the names are checked by ``parse_spec``)
    secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        command = tuple(self.command) if isinstance(self.command, list | tuple) else ()
        if not command or not all(isinstance(arg, str) for arg in command):
            raise ValidationError("command must be a non-empty list of strings")
        object.__setattr__(self, "command", command)
        object.__setattr__(self, "env_vars", _frozen_str_map("env_vars", self.env_vars))
        object.__setattr__(self, "labels", _frozen_str_map("labels", self.labels))
        if len(self.labels) > MAX_LABELS:
            raise ValidationError(f"a function has at most {MAX_LABELS} labels")
        for key, value in self.labels.items():
            if not 1 <= len(key) <= MAX_LABEL_KEY_CHARS or len(value) > MAX_LABEL_VALUE_CHARS:
                raise ValidationError(
                    f"a label key is 1-{MAX_LABEL_KEY_CHARS} characters and its value at most "
                    f"{MAX_LABEL_VALUE_CHARS}")
        for name in ("image", "executor", "content_type"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValidationError(f"{name} must be a string")
        if not isinstance(self.description, str):
            raise ValidationError("description must be a string")
        for name in ("retry_timeouts", "retry_failures"):
            if not isinstance(getattr(self, name), bool):
                raise ValidationError(f"{name} must be a boolean")
        for name in ("memory_mb", "vcpus", "max_concurrency", "max_attempts"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, int):
                raise ValidationError(f"{name} must be an integer")
            _positive(name, value)
        if self.timeout_s is not None and not isinstance(self.timeout_s, int | float):
            raise ValidationError("timeout_s must be a number")
        _positive("timeout_s", self.timeout_s)
        if self.timeout_s is not None and self.timeout_s == float("inf"):
            raise ValidationError("timeout_s must be finite")
        names = tuple(self.secrets) if isinstance(self.secrets, list | tuple) else None
        if names is None or not all(isinstance(name, str) for name in names):
            raise ValidationError("secrets must be a list of names")
        object.__setattr__(self, "secrets", names)
        if self.bundle is not None and not isinstance(self.bundle, BundleRef):
            raise ValidationError("bundle must be a BundleRef")


@dataclass(frozen=True, slots=True)
class FunctionVersion:
    """One stored version: ``version`` counts from 1 and is never reused for the id."""

    function_id: str
    version: int
    spec: FunctionSpec
    created_at: datetime


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """A live function: its latest version and the range of versions it has.

    A function deleted and put again starts a new life: ``first_version`` is
    the first version of that life (numbers go on from the deleted one's, so
    a number never names two specs), ``created_at`` is when it began, and
    versions and invocation counts of the earlier life are no longer visible.
    """

    function_id: str
    latest: FunctionVersion
    first_version: int
    created_at: datetime
    updated_at: datetime
    #: outcome -> invocations counted against this life's versions
    invocations: Mapping[str, int]

    @property
    def latest_version(self) -> int:
        return self.latest.version

    @property
    def version_count(self) -> int:
        return self.latest.version - self.first_version + 1

    @property
    def versions(self) -> range:
        return range(self.first_version, self.latest.version + 1)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``list_functions``; pass ``next_cursor`` back for the next one."""

    items: tuple[FunctionInfo, ...]
    next_cursor: str | None


def spec_to_json(spec: FunctionSpec) -> str:
    """The spec as the JSON text stored in a version row (``ValidationError`` if unencodable)."""
    body: dict[str, Any] = {
        "format": SPEC_FORMAT,
        "command": list(spec.command),
        "image": spec.image,
        "executor": spec.executor,
        "env_vars": dict(spec.env_vars),
        "timeout_s": spec.timeout_s,
        "memory_mb": spec.memory_mb,
        "vcpus": spec.vcpus,
        "max_concurrency": spec.max_concurrency,
        "description": spec.description,
        "labels": dict(spec.labels),
        "bundle": None if spec.bundle is None else {
            "sha256": spec.bundle.sha256, "packed_bytes": spec.bundle.packed_bytes,
            "unpacked_bytes": spec.bundle.unpacked_bytes},
        "content_type": spec.content_type,
        "max_attempts": spec.max_attempts,
        "retry_timeouts": spec.retry_timeouts,
        "retry_failures": spec.retry_failures,
        "secrets": list(spec.secrets),
    }
    try:
        # orjson escapes NUL as \u0000, so the text fits PostgreSQL's TEXT too.
        return orjson.dumps(body).decode()
    except TypeError as exc:  # lone surrogates, non-finite floats
        raise ValidationError(f"the spec cannot be stored: {exc}") from None


def spec_from_json(text: str) -> FunctionSpec:
    body = orjson.loads(text)
    bundle = body.get("bundle")
    return FunctionSpec(
        command=tuple(body["command"]),
        image=body["image"],
        executor=body["executor"],
        env_vars=body["env_vars"],
        timeout_s=body["timeout_s"],
        memory_mb=body["memory_mb"],
        vcpus=body["vcpus"],
        max_concurrency=body["max_concurrency"],
        description=body["description"],
        labels=body["labels"],
        bundle=None if bundle is None else BundleRef(**bundle),
        content_type=body["content_type"],
        # Added after format 1 was released: absent in older rows.
        max_attempts=body.get("max_attempts"),
        retry_timeouts=body.get("retry_timeouts", False),
        retry_failures=body.get("retry_failures", False),
        secrets=tuple(body.get("secrets", ())),
    )
