"""Outbound callbacks: POST a finished invocation's record to its ``X-Callback-Url``.

``CallbackSender`` runs one background task. Each round it asks its
``CallbackQueue`` (the store) for callbacks that are due, delivers up to
``concurrency`` of them at once, records each outcome, and sleeps until
``wake()`` or ``poll_s``. A delivery is a signed POST (``X-Faas-Signature:
sha256=<hex HMAC-SHA256(key, body)>``) that follows no redirect and reads at
most ``MAX_RESPONSE_BYTES`` of the answer; 2xx is delivered, anything else
is retried with full-jitter exponential backoff until ``retry_s`` after the
invocation finished, then failed.

DNS rebinding: the host is resolved and checked again at every delivery and
the connection goes to the checked address, never to the name (which could
resolve elsewhere a moment later). The name still goes in ``Host`` and, for
https, in the TLS SNI and certificate check (httpcore's ``sni_hostname``).

Delivery is at least once: a delivery cut short by ``close()`` has no
outcome recorded, so it is due again on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from faas.errors import FaasError, ShuttingDown, ValidationError
from faas.invocations.callback_url import (
    CallbackUrl,
    IPAddress,
    check_callback_target,
    parse_callback_url,
)
from faas.keyfile import load_or_create_key_file

log = logging.getLogger("faas.callbacks")

KEY_FILE = "callback.key"
KEY_BYTES = 32
MIN_CONFIGURED_KEY_BYTES = 16
MAX_RESPONSE_BYTES = 64 * 1024
MAX_ERROR_CHARS = 200
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0
USER_AGENT = "faas-callback"


def sign(key: bytes, body: bytes) -> str:
    """The ``X-Faas-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------------------
# the signing key
# ---------------------------------------------------------------------------------------

def load_callback_key(data_dir: Path, configured: str) -> bytes:
    """``configured`` (FAAS_CALLBACK_KEY) as UTF-8, or ``<data_dir>/callback.key``.

    The file holds 32 random bytes and is created, mode 0600, on first use;
    processes that race to create it all end up with the one that won
    (``faas.keyfile``).
    """
    if configured:
        key = configured.encode()
        if len(key) < MIN_CONFIGURED_KEY_BYTES:
            raise ValidationError(f"FAAS_CALLBACK_KEY must be at least "
                                  f"{MIN_CONFIGURED_KEY_BYTES} bytes long")
        return key
    return load_or_create_key_file(data_dir / KEY_FILE, KEY_BYTES)


# ---------------------------------------------------------------------------------------
# the store seam
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DueCallback:
    invocation_id: str
    url: str
    body: bytes          # the record JSON to POST, already rendered
    attempts: int        # deliveries tried so far
    finished_at_us: int  # when the invocation finished (microseconds since epoch)


class CallbackQueue(Protocol):
    """What the sender needs from the store.

    ``callback_outcome``'s ``state``: "pending" (due again at ``next_at_us``),
    "delivered" or "failed" (both final).
    """

    async def due_callbacks(self, now_us: int, limit: int) -> list[DueCallback]: ...

    async def callback_outcome(self, invocation_id: str, *, state: str, attempts: int,
                               next_at_us: int | None, error: str | None,
                               delivered_at_us: int | None) -> None: ...


def _wall_clock_us() -> int:
    return time.time_ns() // 1000


# ---------------------------------------------------------------------------------------
# the sender
# ---------------------------------------------------------------------------------------

class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class _Undelivered(Exception):
    """One delivery did not get a 2xx; the message is the outcome's ``error``."""


class CallbackSender:
    """Delivers due callbacks in the background: ``start()``, ``wake()``, ``close()``.

    ``transport`` replaces the default one (no keep-alive, no proxies) in tests;
    the sender closes it. ``clock_us`` (microseconds since the epoch) and
    ``rng`` (full jitter's draws) are injectable for tests too.
    """

    def __init__(self, queue: CallbackQueue, key: bytes, *, retry_s: float,
                 allow_private: bool, transport: httpx.AsyncBaseTransport | None = None,
                 request_timeout_s: float = 10.0, concurrency: int = 8, poll_s: float = 1.0,
                 clock_us: Callable[[], int] = _wall_clock_us,
                 rng: random.Random | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._queue = queue
        self._key = key
        self._retry_us = int(retry_s * 1_000_000)
        self._allow_private = allow_private
        self._transport = transport
        self._request_timeout_s = request_timeout_s
        self._concurrency = concurrency
        self._poll_s = poll_s
        self._clock_us = clock_us
        self._rng = rng if rng is not None else random.SystemRandom()
        self._wake = asyncio.Event()
        self._state = _State.NEW
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        """Start the background task (on the running loop); once."""
        if self._state is _State.CLOSED:
            raise ShuttingDown("the callback sender is closed")
        if self._state is _State.RUNNING:
            return
        # No keep-alive: a pooled connection to one address, TLS-checked for one name,
        # must never carry another name's callback. No proxies from the environment:
        # the connection goes to the checked address.
        transport = self._transport or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_keepalive_connections=0), trust_env=False)
        self._client = httpx.AsyncClient(transport=transport, trust_env=False,
                                         follow_redirects=False,
                                         timeout=httpx.Timeout(self._request_timeout_s))
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="faas-callback-sender")
        self._state = _State.RUNNING

    def wake(self) -> None:
        """Look for due callbacks now (an invocation with a callback just finished)."""
        self._wake.set()

    async def close(self) -> None:
        """Stop the task, cancelling deliveries in flight; idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            more = False
            try:
                more = await self._round()
            except FaasError as exc:
                log.warning("callback queue unavailable: %s", exc)
            except Exception:
                log.exception("callback round failed")
            if not more:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_s):
                        await self._wake.wait()

    async def _round(self) -> bool:
        """Deliver what is due; True if a full batch came (more may be waiting)."""
        due = await self._queue.due_callbacks(self._clock_us(), self._concurrency)
        results: list[bool] = []
        async with asyncio.TaskGroup() as group:
            for callback in due[:self._concurrency]:
                group.create_task(self._deliver(callback, results),
                                  name=f"faas-callback {callback.invocation_id}")
        return len(due) >= self._concurrency and all(results)

    async def _deliver(self, callback: DueCallback, results: list[bool]) -> None:
        """Try once, and record the outcome; never raises (but for cancellation)."""
        try:
            error = await self._attempt(callback)
        except Exception as exc:
            log.exception("callback %s: delivery failed unexpectedly", callback.invocation_id)
            error = f"internal error ({type(exc).__name__})"
        attempts = callback.attempts + 1
        now = self._clock_us()
        next_at: int | None = None
        if error is None:
            state = "delivered"
        elif now - callback.finished_at_us >= self._retry_us:
            state = "failed"
        else:
            state, next_at = "pending", now + self._backoff_us(callback.attempts)
        if error is not None:
            log.info("callback %s attempt %d: %s (%s)", callback.invocation_id, attempts,
                     error, state)
        try:
            await self._queue.callback_outcome(
                callback.invocation_id, state=state, attempts=attempts, next_at_us=next_at,
                error=error, delivered_at_us=now if error is None else None)
        except FaasError as exc:
            log.warning("callback %s: outcome not recorded: %s", callback.invocation_id, exc)
            results.append(False)
        except Exception:
            log.exception("callback %s: outcome not recorded", callback.invocation_id)
            results.append(False)
        else:
            results.append(True)

    def _backoff_us(self, attempts: int) -> int:
        """Full jitter: uniform in [0, min(cap, base * 2**attempts)] seconds."""
        bound = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** min(attempts, 32))
        return int(self._rng.uniform(0.0, bound) * 1_000_000)

    async def _attempt(self, callback: DueCallback) -> str | None:
        """POST once: None if delivered, else a short description of what went wrong."""
        try:
            async with asyncio.timeout(self._request_timeout_s):
                await self._post(callback)
        except _Undelivered as exc:
            return _clip(str(exc))
        except ValidationError as exc:
            return _clip(f"target refused: {exc}")
        except (TimeoutError, httpx.TimeoutException):
            return "timeout"
        except httpx.ConnectError as exc:
            return f"connect error ({type(exc).__name__})"
        except httpx.HTTPError as exc:
            return f"request failed ({type(exc).__name__})"
        return None

    async def _post(self, callback: DueCallback) -> None:
        client = self._client
        if client is None:
            raise ShuttingDown("the callback sender is closed")
        url = parse_callback_url(callback.url)
        addresses = await check_callback_target(url, self._allow_private,
                                                timeout_s=self._request_timeout_s)
        headers = {"Host": url.authority, "Content-Type": "application/json",
                   "X-Faas-Invocation-Id": callback.invocation_id,
                   "X-Faas-Signature": sign(self._key, callback.body),
                   "User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        extensions = {}
        if url.scheme == "https" and url.host_literal is None:
            extensions["sni_hostname"] = url.host
        request = client.build_request("POST", pinned_url(url, addresses[0]),
                                       content=callback.body, headers=headers,
                                       extensions=extensions)
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            received = 0
            async for chunk in response.aiter_raw():  # raw: no decompression of a bomb
                received += len(chunk)
                if received >= MAX_RESPONSE_BYTES:
                    break
        finally:
            await response.aclose()
        if not response.is_success:
            note = " (redirects are not followed)" if response.is_redirect else ""
            raise _Undelivered(f"HTTP {response.status_code}{note}")


def pinned_url(url: CallbackUrl, address: IPAddress) -> str:
    """``url`` with its host replaced by ``address`` (bracketed if IPv6)."""
    text = str(address)
    host = f"[{text}]" if ":" in text else text
    return f"{url.scheme}://{host}:{url.port}{url.path_and_query}"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "..."
