"""The asynchronous form of an invoke: ``Prefer: respond-async`` or ``?async=true``.

``wants_async`` reads the choice; ``async_options`` reads and checks the
headers only an async call may carry (``X-Callback-Url``: a public http(s)
target unless ``FAAS_CALLBACK_ALLOW_PRIVATE``; ``Idempotency-Key``), refusing
them on a sync call; ``accepted`` is the 202 answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from faas.config import Settings
from faas.errors import ValidationError
from faas.gateway.responses import OrjsonResponse
from faas.invocations.callback_url import check_callback_target, parse_callback_url
from faas.store.invocation_records import IDEMPOTENCY_KEY

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True, slots=True)
class AsyncOptions:
    callback_url: str | None = None
    idempotency_key: str | None = None


def wants_async(request: Request) -> bool:
    raw = request.query_params.get("async")
    if raw is not None:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() not in _FALSE:
            raise ValidationError("async must be true or false")
    prefer = request.headers.get("prefer", "")
    return any(token.strip().lower() == "respond-async"
               for token in prefer[:1024].split(","))


async def async_options(request: Request, is_async: bool, settings: Settings) -> AsyncOptions:
    callback = request.headers.get("x-callback-url")
    key = request.headers.get("idempotency-key")
    if not is_async:
        if callback is not None or key is not None:
            raise ValidationError("X-Callback-Url and Idempotency-Key are for asynchronous "
                                  "calls (Prefer: respond-async)")
        return AsyncOptions()
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise ValidationError("Idempotency-Key must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    if callback is not None:
        target = parse_callback_url(callback)
        await check_callback_target(target, settings.invocations.callback_allow_private)
        callback = target.original
    return AsyncOptions(callback, key)


def accepted(invocation_id: str, request_id: str, status: str, replayed: bool) -> Response:
    """202: queued, or (``replayed``) the first call of this Idempotency-Key, as it is now."""
    headers = {"location": f"/invocations/{invocation_id}", "x-request-id": request_id,
               "x-invocation-id": invocation_id}
    if replayed:
        headers["idempotent-replayed"] = "true"
    return OrjsonResponse({"invocation_id": invocation_id, "status": status},
                          status_code=202, headers=headers)
