"""Outbound callbacks: the signature, the key file, and the sender against a real receiver.

The receiver is a small HTTP/1.1 server on 127.0.0.1 in the test's own event
loop; the queue is an in-memory ``CallbackQueue``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import shutil
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from faas.errors import StoreUnavailable, ValidationError
from faas.invocations.callbacks import (
    KEY_FILE,
    CallbackSender,
    DueCallback,
    load_callback_key,
    sign,
)

KEY = b"k" * 32
BODY = b'{"id": "0123456789abcdef0123456789abcdef", "status": "succeeded", "x": "\\u00e9"}'
INVOCATION = "0123456789abcdef0123456789abcdef"


# -- signature and key ----------------------------------------------------------------

def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    # RFC 4231 test case 2
    assert sign(b"Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    assert sign(KEY, BODY) == "sha256=" + hmac.new(KEY, BODY, hashlib.sha256).hexdigest()
    assert sign(KEY, BODY) != sign(KEY, BODY + b" ")


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    key = load_callback_key(tmp_path, "")
    path = tmp_path / KEY_FILE
    info = path.lstat()
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert len(key) == 32 and path.read_bytes() == key
    assert load_callback_key(tmp_path, "") == key
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE]  # no scratch left


def test_a_configured_key_wins_and_must_be_long_enough(tmp_path: Path) -> None:
    assert load_callback_key(tmp_path, "s3cret-s3cret-s3cret") == b"s3cret-s3cret-s3cret"
    assert not (tmp_path / KEY_FILE).exists()
    with pytest.raises(ValidationError, match="FAAS_CALLBACK_KEY") as caught:
        load_callback_key(tmp_path, "tooShortSecret")
    assert "tooShortSecret" not in str(caught.value)


@pytest.mark.parametrize(("make", "problem"), [
    (lambda p: (p.write_bytes(b"x" * 32), p.chmod(0o644)), "group or others"),
    (lambda p: (p.write_bytes(b"x" * 32), p.chmod(0o640)), "group or others"),
    (lambda p: (p.write_bytes(b"x" * 31), p.chmod(0o600)), "exactly 32 bytes"),
    (lambda p: (p.write_bytes(b"x" * 33), p.chmod(0o600)), "exactly 32 bytes"),
    (lambda p: (p.write_bytes(b""), p.chmod(0o600)), "exactly 32 bytes"),
    (lambda p: p.mkdir(mode=0o700), "regular file"),
    (lambda p: os.mkfifo(p, 0o600), "regular file"),
])
def test_a_bad_key_file_is_refused(tmp_path: Path, make: Callable[[Path], object],
                                   problem: str) -> None:
    path = tmp_path / KEY_FILE
    make(path)
    with pytest.raises(StoreUnavailable, match=problem) as caught:
        load_callback_key(tmp_path, "")
    assert str(tmp_path) not in str(caught.value)


def test_a_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"x" * 32)
    target.chmod(0o600)
    (tmp_path / KEY_FILE).symlink_to(target)
    with pytest.raises(StoreUnavailable, match="symbolic link"):
        load_callback_key(tmp_path, "")
    dangling = tmp_path / "sub"
    dangling.mkdir()
    (dangling / KEY_FILE).symlink_to(tmp_path / "missing")
    with pytest.raises(StoreUnavailable):
        load_callback_key(dangling, "")
    assert not (tmp_path / "missing").exists()  # the link was not followed to create it


# -- the fakes ------------------------------------------------------------------------

@dataclass
class Entry:
    url: str
    body: bytes
    finished_at_us: int
    attempts: int = 0
    state: str = "pending"
    next_at_us: int = 0


@dataclass
class FakeQueue:
    entries: dict[str, Entry] = field(default_factory=dict)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    #: raised by the next calls of due_callbacks, one each
    due_errors: list[Exception] = field(default_factory=list)

    async def due_callbacks(self, now_us: int, limit: int) -> list[DueCallback]:
        if self.due_errors:
            raise self.due_errors.pop(0)
        due = [DueCallback(i, e.url, e.body, e.attempts, e.finished_at_us)
               for i, e in self.entries.items()
               if e.state == "pending" and e.next_at_us <= now_us]
        return due[:limit]

    async def callback_outcome(self, invocation_id: str, *, state: str, attempts: int,
                               next_at_us: int | None, error: str | None,
                               delivered_at_us: int | None) -> None:
        entry = self.entries[invocation_id]
        entry.state, entry.attempts = state, attempts
        entry.next_at_us = next_at_us or 0
        self.outcomes.append({"id": invocation_id, "state": state, "attempts": attempts,
                              "next_at_us": next_at_us, "error": error,
                              "delivered_at_us": delivered_at_us})


class RecordingRandom(random.Random):
    """Full jitter's draws, recorded; each answers 10% of the bound."""

    def __init__(self) -> None:
        super().__init__(0)
        self.bounds: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.bounds.append((a, b))
        return a + (b - a) * 0.1


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = Callable[[int, Received], Awaitable[tuple[int, dict[str, str]]]]


@dataclass
class Receiver:
    """An HTTP/1.1 server on 127.0.0.1: each request is recorded, then ``answer`` decides."""

    answer: Answer
    requests: list[Received] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip()
                       for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            received = Received(method, path, headers, body)
            self.requests.append(received)
            status, extra = await self.answer(len(self.requests), received)
            reply = b"x" * 200_000  # more than the sender reads
            head_out = f"HTTP/1.1 {status} X\r\nContent-Length: {len(reply)}\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in extra.items()) + "Connection: close\r\n\r\n"
            writer.write(head_out.encode() + reply)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async def ok(_n: int, _r: Received) -> tuple[int, dict[str, str]]:
        return 200, {}
    recv = Receiver(ok)
    server = await asyncio.start_server(recv.handle, "127.0.0.1", 0)
    recv.port = server.sockets[0].getsockname()[1]
    async with server:
        yield recv
        server.close()
        for task in recv.handlers:
            task.cancel()
        await asyncio.gather(*recv.handlers, return_exceptions=True)


def fixed(*statuses: int, then: int = 200) -> Answer:
    async def answer(n: int, _r: Received) -> tuple[int, dict[str, str]]:
        return (statuses[n - 1] if n <= len(statuses) else then), {}
    return answer


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def now_us() -> int:
    return time.time_ns() // 1000


def sender_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("faas-callback")
            and not t.done()]


# -- the sender -----------------------------------------------------------------------

async def test_retries_then_delivers_a_signed_post(receiver: Receiver) -> None:
    receiver.answer = fixed(503, 503)
    queue = FakeQueue({INVOCATION: Entry(receiver.url("/hook?a=1"), BODY, now_us())})
    rng = RecordingRandom()
    sender = CallbackSender(queue, KEY, retry_s=3600, allow_private=True, poll_s=0.02, rng=rng)
    sender.start()
    try:
        await until(lambda: queue.entries[INVOCATION].state == "delivered")
    finally:
        await sender.close()
    assert len(receiver.requests) == 3
    for request in receiver.requests:
        assert request.method == "POST" and request.path == "/hook?a=1"
        assert request.body == BODY
        expected = "sha256=" + hmac.new(KEY, request.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers["x-faas-signature"], expected)
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-faas-invocation-id"] == INVOCATION
        assert request.headers["user-agent"] == "faas-callback"
        assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert [(o["state"], o["attempts"], o["error"]) for o in queue.outcomes] == [
        ("pending", 1, "HTTP 503"), ("pending", 2, "HTTP 503"), ("delivered", 3, None)]
    assert rng.bounds == [(0.0, 1.0), (0.0, 2.0)]  # 1 s doubling, full jitter
    first, second, last = queue.outcomes
    assert last["next_at_us"] is None and last["delivered_at_us"] is not None
    for outcome, bound_s in ((first, 1.0), (second, 2.0)):
        # drawn 10% into [0, bound], from a clock read just before the outcome
        delay = outcome["next_at_us"] - now_us()
        assert -2_000_000 < delay <= bound_s * 0.1 * 1_000_000


async def test_always_failing_gives_up_once_retry_s_has_passed(receiver: Receiver) -> None:
    receiver.answer = fixed(then=500)
    clock = [1_000_000_000_000]
    queue = FakeQueue({INVOCATION: Entry(receiver.url(), BODY, clock[0])})
    sender = CallbackSender(queue, KEY, retry_s=60, allow_private=True, poll_s=0.02,
                            clock_us=lambda: clock[0], rng=RecordingRandom())
    sender.start()
    try:
        await until(lambda: len(queue.outcomes) == 1)
        assert queue.outcomes[0]["state"] == "pending"
        clock[0] += 59_000_000  # still inside retry_s
        await until(lambda: len(queue.outcomes) == 2)
        assert queue.outcomes[1]["state"] == "pending"
        clock[0] += 1_000_000  # retry_s after the invocation finished
        await until(lambda: len(queue.outcomes) == 3)
        clock[0] += 3_600_000_000
        sender.wake()
        await asyncio.sleep(0.1)
    finally:
        await sender.close()
    assert [(o["state"], o["attempts"], o["error"]) for o in queue.outcomes] == [
        ("pending", 1, "HTTP 500"), ("pending", 2, "HTTP 500"), ("failed", 3, "HTTP 500")]
    assert queue.outcomes[2]["next_at_us"] is None
    assert len(receiver.requests) == 3  # nothing after "failed"


async def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    async def redirect(n: int, _r: Received) -> tuple[int, dict[str, str]]:
        return (302, {"Location": receiver.url("/elsewhere")}) if n == 1 else (200, {})
    receiver.answer = redirect
    queue = FakeQueue({INVOCATION: Entry(receiver.url(), BODY, now_us())})
    sender = CallbackSender(queue, KEY, retry_s=3600, allow_private=True, poll_s=0.02)
    sender.start()
    try:
        await until(lambda: len(queue.outcomes) == 1)
    finally:
        await sender.close()
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert queue.outcomes[0]["state"] == "pending"
    assert (queue.outcomes[0]["error"] or "").startswith("HTTP 302")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_private_target_is_refused_without_connecting(receiver: Receiver,
                                                              host: str) -> None:
    queue = FakeQueue({INVOCATION: Entry(receiver.url(host=host), BODY, now_us())})
    sender = CallbackSender(queue, KEY, retry_s=3600, allow_private=False, poll_s=0.02)
    sender.start()
    try:
        await until(lambda: len(queue.outcomes) == 1)
    finally:
        await sender.close()
    assert receiver.connections == 0
    assert queue.outcomes[0]["state"] == "pending"
    assert "not public" in (queue.outcomes[0]["error"] or "")


async def test_the_connection_goes_to_the_address_checked_at_delivery(
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name answers once (with the receiver's address); any later
    lookup fails. Delivery works only if the sender connects to the address it checked."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    lookups: list[str] = []

    async def rebinding(host: Any, port: Any, **kwargs: Any) -> Any:
        if host == "hooks.test":
            lookups.append(host)
            if len(lookups) > 1:
                raise socket.gaierror(socket.EAI_NONAME, "rebound")
            host = "127.0.0.1"
        return await real(host, port, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    queue = FakeQueue({INVOCATION: Entry(receiver.url(host="hooks.test"), BODY, now_us())})
    sender = CallbackSender(queue, KEY, retry_s=3600, allow_private=True, poll_s=0.02)
    sender.start()
    try:
        await until(lambda: len(queue.outcomes) == 1)
    finally:
        await sender.close()
    assert queue.outcomes[0]["state"] == "delivered", queue.outcomes
    assert lookups == ["hooks.test"]
    assert receiver.requests[0].headers["host"] == f"hooks.test:{receiver.port}"


@pytest.mark.parametrize(("url", "pinned", "host", "sni"), [
    ("https://hooks.test/cb?x=1", "https://93.184.215.14/cb?x=1", "hooks.test", "hooks.test"),
    ("https://hooks.test:8443/", "https://93.184.215.14:8443/", "hooks.test:8443",
     "hooks.test"),
    ("http://hooks.test/", "http://93.184.215.14/", "hooks.test", None),
    ("https://[2606:4700::1111]:8443/p", "https://[2606:4700::1111]:8443/p",
     "[2606:4700::1111]:8443", None),
])
async def test_the_request_names_the_host_but_goes_to_the_address(
        monkeypatch: pytest.MonkeyPatch, url: str, pinned: str, host: str,
        sni: str | None) -> None:
    loop = asyncio.get_running_loop()

    async def public(name: Any, port: Any, **_kwargs: Any) -> Any:
        assert name == "hooks.test"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]

    monkeypatch.setattr(loop, "getaddrinfo", public)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204, stream=httpx.ByteStream(b""))  # unread, as from a socket

    queue = FakeQueue({INVOCATION: Entry(url, BODY, now_us())})
    sender = CallbackSender(queue, KEY, retry_s=3600, allow_private=False, poll_s=0.02,
                            transport=httpx.MockTransport(handler))
    sender.start()
    try:
        await until(lambda: len(queue.outcomes) == 1)
    finally:
        await sender.close()
    assert queue.outcomes[0]["state"] == "delivered"
    (request,) = seen
    assert str(request.url) == pinned
    assert request.headers["host"] == host
    assert request.extensions.get("sni_hostname") == sni


async def test_close_during_a_slow_delivery_returns_promptly(receiver: Receiver) -> None:
    async def slow(_n: int, _r: Received) -> tuple[int, dict[str, str]]:
        await asyncio.sleep(30)
        return 200, {}
    receiver.answer = slow
    queue = FakeQueue({INVOCATION: Entry(receiver.url(), BODY, now_us())})
    sender = CallbackSender(queue, KEY, retry_s=3600, allow_private=True, poll_s=0.02,
                            request_timeout_s=60)
    sender.start()
    await until(lambda: len(receiver.requests) == 1)
    assert sender_tasks()
    started = time.monotonic()
    await sender.close()
    assert time.monotonic() - started < 1.0
    assert sender_tasks() == []
    assert queue.outcomes == []  # cut short: due again on the next start
    await sender.close()  # idempotent


async def test_a_failing_queue_does_not_stop_the_sender(receiver: Receiver,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    queue = FakeQueue({INVOCATION: Entry(receiver.url(), BODY, now_us())},
                      due_errors=[StoreUnavailable("database is unavailable (OperationalError)"),
                                  RuntimeError("a bug")])
    sender = CallbackSender(queue, KEY, retry_s=3600, allow_private=True, poll_s=0.02)
    with caplog.at_level("WARNING", logger="faas.callbacks"):
        sender.start()
        try:
            await until(lambda: len(queue.outcomes) == 1)
        finally:
            await sender.close()
    assert queue.outcomes[0]["state"] == "delivered" and queue.due_errors == []
    messages = [r.getMessage() for r in caplog.records]
    assert any("unavailable" in m for m in messages)
    assert any(r.exc_info for r in caplog.records)


async def test_wake_delivers_without_waiting_for_the_poll(receiver: Receiver) -> None:
    queue = FakeQueue()
    sender = CallbackSender(queue, KEY, retry_s=3600, allow_private=True, poll_s=60)
    sender.start()
    try:
        await asyncio.sleep(0.05)  # the first round found nothing; now it sleeps 60 s
        queue.entries[INVOCATION] = Entry(receiver.url(), BODY, now_us())
        sender.wake()
        await until(lambda: len(queue.outcomes) == 1, timeout_s=5)
    finally:
        await sender.close()
    assert queue.outcomes[0]["state"] == "delivered"


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.mark.parametrize(("cert_name", "delivered"), [("hooks.test", True),
                                                      ("other.test", False)])
async def test_https_to_the_address_checks_the_certificate_against_the_name(
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        cert_name: str, delivered: bool) -> None:
    """The connection goes to 127.0.0.1, yet TLS sends SNI ``hooks.test`` and verifies the
    certificate for that name (httpcore's ``sni_hostname``): a certificate for another
    name fails, as would one for the bare address."""
    cert, key = _self_signed(tmp_path, cert_name)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    sni_seen: list[str] = []

    def record_sni(_sock: ssl.SSLObject, name: str, _ctx: ssl.SSLContext) -> None:
        sni_seen.append(name)

    server_tls.sni_callback = record_sni
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def resolve(host: Any, port: Any, **kwargs: Any) -> Any:
        return await real("127.0.0.1" if host == "hooks.test" else host, port, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    client_tls = ssl.create_default_context(cafile=str(cert))
    transport = httpx.AsyncHTTPTransport(verify=client_tls, trust_env=False)
    queue = FakeQueue({INVOCATION: Entry(f"https://hooks.test:{port}/tls", BODY, now_us())})
    sender = CallbackSender(queue, KEY, retry_s=3600, allow_private=True, poll_s=0.02,
                            transport=transport)
    async with server:
        sender.start()
        try:
            await until(lambda: len(queue.outcomes) == 1)
        finally:
            await sender.close()
    assert sni_seen and sni_seen[0] == "hooks.test"
    if delivered:
        assert queue.outcomes[0]["state"] == "delivered", queue.outcomes
        assert receiver.requests[0].headers["host"] == f"hooks.test:{port}"
    else:
        assert queue.outcomes[0]["state"] == "pending"
        assert queue.outcomes[0]["error"] == "connect error (ConnectError)"
        assert receiver.requests == []
