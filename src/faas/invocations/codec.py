"""A queued call as the bytes the store keeps until it runs: the validated request, the
deployed code bundle, if any, and the names of the secrets it gets (never their values:
those are read when it runs). Decoding validates again (the row is data from disk)."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from faas.errors import ValidationError
from faas.functions.deployed import validate_invoke
from faas.models import InvokeRequest
from faas.secrets.names import MAX_SECRETS_PER_FUNCTION, check_secret_name
from faas.store import BundleRef

FORMAT = 1


def encode_call(request: InvokeRequest, bundle: BundleRef | None,
                secrets: tuple[str, ...] = ()) -> bytes:
    body: dict[str, Any] = {
        "format": FORMAT,
        "request": {
            "command": request.command, "image": request.image,
            "env_vars": request.env_vars, "executor": request.executor,
            "payload": base64.b64encode(request.payload).decode(),
            "timeout_s": request.timeout_s, "memory_mb": request.memory_mb,
            "vcpus": request.vcpus, "output_encoding": request.output_encoding},
        "bundle": None if bundle is None else {
            "sha256": bundle.sha256, "packed_bytes": bundle.packed_bytes,
            "unpacked_bytes": bundle.unpacked_bytes},
        "secrets": list(secrets),
    }
    return orjson.dumps(body)


def decode_call(raw: bytes) -> tuple[InvokeRequest, BundleRef | None, tuple[str, ...]]:
    """``ValidationError`` if the bytes are not a call this module wrote."""
    try:
        body = orjson.loads(raw)
        if body.get("format") != FORMAT:
            raise ValueError("format")
        bundle = body["bundle"]
        names = body.get("secrets", [])  # calls queued before secrets existed: none
        if not isinstance(names, list) or len(names) > MAX_SECRETS_PER_FUNCTION:
            raise ValueError("secrets")
        return (validate_invoke(body["request"]),
                None if bundle is None else BundleRef(**bundle),
                tuple(check_secret_name(name) for name in names))
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError):
        raise ValidationError("the queued call could not be read back") from None
