"""A function spec from hostile JSON: every field checked, every problem named at once.

``parse_spec(data, settings, executors)`` turns the ``spec`` object of a
``PUT /functions/{id}`` into a ``faas.store.FunctionSpec``, or raises
``InvalidSpec`` listing each problem as ``"field: what is wrong"`` (one 400
answer names them all). The bounds are the invoke body's (argv, environment)
and the store's (labels), plus this server's maxima: a spec that could never
run here is refused when it is deployed, not when it is first called.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from typing import Any

from faas.config import Settings
from faas.errors import InvalidSpec, ValidationError
from faas.models import (
    MAX_ARG_BYTES,
    MAX_ARGS,
    MAX_ARGV_BYTES,
    MAX_ENV_BYTES,
    MAX_ENV_KEY_BYTES,
    MAX_ENV_VARS,
    MAX_NAME_BYTES,
)
from faas.secrets.names import MAX_SECRETS_PER_FUNCTION, SECRET_NAME_PATTERN
from faas.store import BundleRef, FunctionSpec
from faas.store.records import MAX_LABEL_KEY_CHARS, MAX_LABEL_VALUE_CHARS, MAX_LABELS

#: Largest spec JSON (a part or a whole body): argv and env at their maxima, labels, text.
MAX_SPEC_BYTES = 512 * 1024
MAX_DESCRIPTION_CHARS = 1024
#: A per-function concurrency cap beyond this means nothing (the server's cap applies).
MAX_FUNCTION_CONCURRENCY = 1_000_000
DEFAULT_CONTENT_TYPE = "application/octet-stream"
KEYS = ("command", "image", "executor", "env_vars", "timeout_s", "memory_mb", "vcpus",
        "max_concurrency", "description", "labels", "content_type", "max_attempts",
        "retry_timeouts", "retry_failures", "secrets")
#: Most attempts a function may ask for per call.
MAX_ATTEMPTS = 10

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A response header value: a media type, printable ASCII (no CR/LF: it is sent as a header).
CONTENT_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}"
                           r"(?:[ ]?;[ ]?[A-Za-z0-9!#$&^_.+-]{1,64}=[\x21-\x7e]{1,64}){0,4}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, name: str, why: str) -> None:
        self.problems.append(f"{name}: {why}")

    def command(self, value: Any) -> tuple[str, ...]:
        if (not isinstance(value, list) or not value or len(value) > MAX_ARGS
                or not all(isinstance(arg, str) for arg in value)):
            self.bad("command", f"must be a list of 1-{MAX_ARGS} strings")
            return ("x",)
        if not value[0]:
            self.bad("command", "command[0] must not be empty")
        if any("\x00" in arg for arg in value):
            self.bad("command", "arguments must not contain NUL bytes")
        sizes = [_utf8_len(arg) for arg in value]
        if max(sizes) > MAX_ARG_BYTES or sum(sizes) > MAX_ARGV_BYTES:
            self.bad("command", f"at most {MAX_ARG_BYTES} bytes an argument and "
                                f"{MAX_ARGV_BYTES} in all")
        return tuple(value)

    def name(self, field: str, value: Any, allowed: Collection[str] | None = None) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value or _utf8_len(value) > MAX_NAME_BYTES \
                or _CONTROL.search(value):
            self.bad(field, f"must be a string of 1-{MAX_NAME_BYTES} bytes without control "
                            "characters")
            return None
        if allowed is not None and value not in allowed:
            self.bad(field, f"unknown executor (this server has: {', '.join(sorted(allowed))})")
        return value

    def env_vars(self, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict) or len(value) > MAX_ENV_VARS:
            self.bad("env_vars", f"must be an object of at most {MAX_ENV_VARS} string values")
            return {}
        total = 0
        for key, val in value.items():
            if not isinstance(val, str) or not _ENV_KEY.fullmatch(key) \
                    or len(key) > MAX_ENV_KEY_BYTES or "\x00" in val:
                self.bad("env_vars", f"keys are [A-Za-z_][A-Za-z0-9_]* of at most "
                                     f"{MAX_ENV_KEY_BYTES} bytes, values strings without NUL")
                return {}
            total += _utf8_len(key) + 1 + _utf8_len(val)
        if total > MAX_ENV_BYTES:
            self.bad("env_vars", f"exceed {MAX_ENV_BYTES} bytes in all")
        return dict(value)

    def number(self, field: str, value: Any, low: float, high: float,
               integer: bool) -> Any:
        if value is None:
            return None
        ok = _integer(value) if integer else (
            (_integer(value) or isinstance(value, float)) and math.isfinite(value))
        if not ok or not low <= value <= high:
            kind = "an integer" if integer else "a number"
            self.bad(field, f"must be {kind} from {low:g} to {high:g}")
            return None
        return value

    def labels(self, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict) or len(value) > MAX_LABELS:
            self.bad("labels", f"must be an object of at most {MAX_LABELS} labels")
            return {}
        for key, val in value.items():
            if (not isinstance(val, str) or not 1 <= len(key) <= MAX_LABEL_KEY_CHARS
                    or len(val) > MAX_LABEL_VALUE_CHARS or "=" in key
                    or _CONTROL.search(key) or _CONTROL.search(val)):
                self.bad("labels", f"keys are 1-{MAX_LABEL_KEY_CHARS} characters without '=', "
                                   f"values strings of at most {MAX_LABEL_VALUE_CHARS}; no "
                                   "control characters")
                return {}
        return dict(value)

    def text(self, field: str, value: Any, limit: int) -> str:
        if value is None:
            return ""
        if not isinstance(value, str) or len(value) > limit:
            self.bad(field, f"must be a string of at most {limit} characters")
            return ""
        return value

    def flag(self, field: str, value: Any) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            self.bad(field, "must be true or false")
            return False
        return value

    def secrets(self, value: Any) -> tuple[str, ...]:
        """Names of the tenant's secrets (whether they exist is known only at call time)."""
        if value is None:
            return ()
        if (not isinstance(value, list) or len(value) > MAX_SECRETS_PER_FUNCTION
                or not all(isinstance(name, str) for name in value)):
            self.bad("secrets", f"must be a list of at most {MAX_SECRETS_PER_FUNCTION} names")
            return ()
        if not all(SECRET_NAME_PATTERN.fullmatch(name) for name in value):
            self.bad("secrets", "a name is 1-64 of [A-Za-z0-9_-], starting with a letter or "
                                "digit")
        if len(set(value)) != len(value):
            self.bad("secrets", "names must be unique")
        return tuple(value)

    def content_type(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not CONTENT_TYPE.fullmatch(value):
            self.bad("content_type", "must be a media type such as text/plain; charset=utf-8 "
                                     "(printable ASCII)")
            return None
        return value


def parse_spec(data: Any, settings: Settings, executors: Collection[str],
               bundle: BundleRef | None = None) -> FunctionSpec:
    """The spec in ``data`` (a parsed JSON value); ``InvalidSpec`` naming every problem."""
    if not isinstance(data, dict):
        raise InvalidSpec(["spec: must be a JSON object"])
    check = _Checker()
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        check.bad("spec", "unknown keys: " + ", ".join(repr(k[:40]) for k in unknown[:10]))
    if "command" not in data:
        check.bad("command", "is required")
    number: Callable[..., Any] = check.number
    values = {
        "command": check.command(data.get("command", ["x"])),
        "image": check.name("image", data.get("image")),
        "executor": check.name("executor", data.get("executor"), executors),
        "env_vars": check.env_vars(data.get("env_vars")),
        "timeout_s": number("timeout_s", data.get("timeout_s"), 0.001,
                            settings.max_timeout_s, False),
        "memory_mb": number("memory_mb", data.get("memory_mb"), 16, settings.max_memory_mb,
                            True),
        "vcpus": number("vcpus", data.get("vcpus"), 1, settings.max_vcpus, True),
        "max_concurrency": number("max_concurrency", data.get("max_concurrency"), 1,
                                  MAX_FUNCTION_CONCURRENCY, True),
        "description": check.text("description", data.get("description"),
                                  MAX_DESCRIPTION_CHARS),
        "labels": check.labels(data.get("labels")),
        "content_type": check.content_type(data.get("content_type")),
        "max_attempts": number("max_attempts", data.get("max_attempts"), 1, MAX_ATTEMPTS, True),
        "retry_timeouts": check.flag("retry_timeouts", data.get("retry_timeouts")),
        "retry_failures": check.flag("retry_failures", data.get("retry_failures")),
        "secrets": check.secrets(data.get("secrets")),
    }
    if check.problems:
        raise InvalidSpec(check.problems)
    try:
        return FunctionSpec(**values, bundle=bundle)
    except ValidationError as exc:  # the store's own shape checks; not expected to differ
        raise InvalidSpec([f"spec: {exc}"]) from None
