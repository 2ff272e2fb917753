"""Reading and parsing an invoke body under the hostile-caller rules.

The route reserves memory from the ``ByteBudget`` (``parse_cost`` of the
declared length, or of the limit) before it reads a byte; the Content-Length
is checked first (400 malformed, 413 over the limit); the whole body must
arrive within the read deadline (408) and may not grow past the limit as it
streams in (413); parsing bounds the memory lists can take. FastAPI never
parses this body itself: its own body parameter would read the whole body
before any of these rules ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pydantic_core
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import ClientDisconnect, Request

from faas.errors import PayloadTooLarge, RequestTimeout, ValidationError
from faas.logs import clip
from faas.models import MAX_PAYLOAD_ARRAY, InvokeRequest

#: Commas a body may hold: every JSON list element but the first follows one,
#: and parsing costs 8 bytes an element, so this bounds the memory of lists.
MAX_JSON_COMMAS = MAX_PAYLOAD_ARRAY + 8192


class ClientGone(Exception):
    """The client closed the connection while sending its request."""


def parse_cost(length: int) -> int:
    """Most memory reading and parsing a body of ``length`` bytes may take.

    The body itself, the strings parsed from it (never longer than the body;
    the parser makes each string once, without a scratch copy), the decoded
    payload (shorter than its base64 string) and the lists (8 bytes an
    element; elements are bounded by the commas, at most one per two bytes
    and at most ``MAX_JSON_COMMAS``).
    """
    return 2 * length + 8 * min(length // 2 + 1, MAX_JSON_COMMAS) + 64 * 1024


def declared_length(request: Request, limit: int) -> int | None:
    """The body's Content-Length, or None without one; 400 if malformed, 413 over ``limit``.

    Checked before anything is reserved or read.
    """
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not declared.isdigit() or len(declared) > 18:
        raise ValidationError("invalid Content-Length header")
    if int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds {limit}")
    return int(declared)


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body, refusing (413) one that grows past ``limit`` as it streams in.

    The whole body must arrive within ``timeout_s`` (else ``RequestTimeout``);
    a client that disconnects meanwhile raises ``ClientGone``.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout_s:g}s") from None
    except ClientDisconnect:
        raise ClientGone from None
    return b"".join(chunks)


async def stream_body(request: Request, limit: int, deadline: float) -> AsyncIterator[bytes]:
    """The request body chunk by chunk, for uploads that are not held in memory.

    Each chunk must arrive by ``deadline`` (loop clock; else ``RequestTimeout``),
    and the body may not grow past ``limit`` (``PayloadTooLarge``); a client
    that disconnects raises ``ClientGone``.
    """
    size = 0
    chunks = request.stream()
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout("the request body did not arrive within the read timeout") \
                from None
        except ClientDisconnect:
            raise ClientGone from None
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        yield chunk


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (pydantic-core's parser makes each string once,
    without the scratch copy other parsers take, so a large payload string
    costs its own size only)."""
    if body.count(b",") > MAX_JSON_COMMAS:
        raise PayloadTooLarge(
            f"request body holds more than {MAX_JSON_COMMAS} list elements; a payload "
            f"over {MAX_PAYLOAD_ARRAY} bytes must be sent as a base64 string")
    try:
        data = pydantic_core.from_json(body, cache_strings=False)
    except ValueError as exc:
        raise ValidationError(f"request body is not valid JSON: {clip(exc, 200)}") from None
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object")
    payload = data.get("payload")
    if isinstance(payload, list) and len(payload) > MAX_PAYLOAD_ARRAY:
        raise PayloadTooLarge(
            f"a payload array may hold at most {MAX_PAYLOAD_ARRAY} bytes; a larger payload "
            "must be sent as a base64 string")
    return data


def describe(errors: Sequence[Mapping[str, Any]]) -> str:
    """Validation errors (pydantic's or FastAPI's) in one line: where and what, clipped."""
    problems = "; ".join(
        f"{'.'.join(clip(p, 40) for p in e['loc']) or 'body'}: {clip(e['msg'], 300)}"
        for e in errors[:10]
    )
    return f"invalid request: {problems}"


def validate_invoke(data: dict[str, Any]) -> InvokeRequest:
    try:
        return InvokeRequest.model_validate(data)
    except PydanticValidationError as exc:
        raise ValidationError(describe(exc.errors())) from None


def parse_invoke(body: bytes) -> InvokeRequest:
    return validate_invoke(parse_json(body))
