"""A call of a deployed function: the caller's body over the function's stored spec.

The caller may give stdin (``payload``), extra environment (merged over the
function's), and limits no higher than the function's own (``timeout_s``,
``memory_mb``, ``vcpus``); what the function runs (``command``, ``image``,
``executor``) is fixed by its version and a body naming any of them is
refused. The result is an ordinary ``InvokeRequest``, so every bound of an
ad hoc call (argv, environment bytes, server maxima) applies unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError as PydanticValidationError

from faas.config import Settings
from faas.errors import ValidationError
from faas.logs import clip
from faas.models import InvokeRequest
from faas.store import FunctionSpec

#: What a deployed function fixes and a caller may not override.
FIXED = ("command", "image", "executor")


def deployed_request(spec: FunctionSpec, body: dict[str, Any],
                     settings: Settings) -> InvokeRequest:
    """The invocation of ``spec`` that ``body`` (a parsed JSON object) asks for."""
    fixed = [key for key in FIXED if key in body]
    if fixed:
        raise ValidationError(
            f"{', '.join(fixed)} cannot be given when invoking a deployed function: its "
            "version fixes them (deploy a new version to change them)")
    caller = validate_invoke({**body, "command": ["x"]})
    own: dict[str, float] = {"timeout_s": spec.timeout_s or settings.default_timeout_s,
                             "memory_mb": spec.memory_mb or settings.default_memory_mb,
                             "vcpus": spec.vcpus or 1}
    asked: dict[str, float | None] = {"timeout_s": caller.timeout_s,
                                      "memory_mb": caller.memory_mb, "vcpus": caller.vcpus}
    higher = [f"{key} {value:g} exceeds the function's {own[key]:g}"
              for key, value in asked.items() if value is not None and value > own[key]]
    if higher:
        raise ValidationError("; ".join(higher))
    env = {**spec.env_vars, **caller.env()}
    return validate_invoke({
        "command": list(spec.command), "image": spec.image, "executor": spec.executor,
        "env_vars": [f"{k}={v}" for k, v in env.items()],
        "payload": None, "output_encoding": caller.output_encoding,
        **{key: asked[key] if asked[key] is not None else getattr(spec, key) for key in own},
    }).model_copy(update={"payload": caller.payload})


def validate_invoke(data: dict[str, Any]) -> InvokeRequest:
    try:
        return InvokeRequest.model_validate(data)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(clip(p, 40) for p in e['loc']) or 'body'}: {clip(e['msg'], 300)}"
            for e in exc.errors()[:10])
        raise ValidationError(f"invalid request: {problems}") from None
