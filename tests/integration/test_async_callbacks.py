"""Callbacks of async invocations end to end: a real ``faas serve`` (sandbox tier; SQLite
and PostgreSQL) POSTs the record to a real HTTP receiver on 127.0.0.1 in this test,
retries until a 2xx, signs the exact body; private targets are refused at accept time."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_support import (
    ASYNC,
    adhoc,
    assert_error,
    listed,
    record,
    serve,
    submit,
    wait_final,
    wait_for,
)

pytestmark = pytest.mark.sandbox
KEY = "test-callback-key-0123456789abcdef"


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next scripted status (the last one repeats)."""

    statuses: list[int]
    got: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver([200])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with state.lock:
                state.got.append(Delivery(self.path, {k.lower(): v for k, v in
                                                      self.headers.items()}, body))
                status = state.statuses[min(len(state.got), len(state.statuses)) - 1]
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def callback_state(c: httpx.Client, invocation_id: str, state: str) -> dict[str, Any] | None:
    found = record(c, invocation_id)
    return found if found["callback"] and found["callback"]["state"] == state else None


def test_callback_retried_until_delivered_and_signed(
        bwrap_available: None, tmp_path: Path, database_url: str,
        receiver: Receiver) -> None:
    receiver.statuses = [503, 503, 200]
    env = {"FAAS_CALLBACK_ALLOW_PRIVATE": "1", "FAAS_CALLBACK_KEY": KEY}
    with serve(tmp_path, database_url, **env) as server, server.client() as c:
        url = receiver.url("/hook?token=abc")
        invocation_id = submit(c, "cb", adhoc(["echo", "called back"]),
                               headers={"X-Callback-Url": url})
        done = wait_final(c, invocation_id)
        assert done["status"] == "succeeded"
        final = wait_for(lambda: callback_state(c, invocation_id, "delivered"), timeout=60,
                         why="callback delivered")
    callback = final["callback"]
    assert callback["url"] == url and callback["attempts"] == 3
    assert callback["delivered_at"] is not None
    assert len(receiver.got) == 3
    for delivery in receiver.got:
        assert delivery.path == "/hook?token=abc"
        assert delivery.headers["x-faas-invocation-id"] == invocation_id
        assert delivery.headers["content-type"].startswith("application/json")
        assert delivery.headers["user-agent"] == "faas-callback"
        expected = hmac.new(KEY.encode(), delivery.body, hashlib.sha256).hexdigest()
        assert delivery.headers["x-faas-signature"] == f"sha256={expected}"
        wrong = hmac.new(b"another key of enough length!!", delivery.body,
                         hashlib.sha256).hexdigest()
        assert delivery.headers["x-faas-signature"] != f"sha256={wrong}"
        sent = json.loads(delivery.body)
        assert sent["id"] == invocation_id and sent["status"] == "succeeded"
        assert sent["stdout"] == "called back\n" and sent["mode"] == "async"
        for key in ("request_id", "function_id", "accepted_at", "finished_at", "exit_code"):
            assert sent[key] == done[key], key


def test_callback_gives_up_after_the_retry_window(
        bwrap_available: None, tmp_path: Path, database_url: str,
        receiver: Receiver) -> None:
    receiver.statuses = [500]
    env = {"FAAS_CALLBACK_ALLOW_PRIVATE": "1", "FAAS_CALLBACK_KEY": KEY,
           "FAAS_CALLBACK_RETRY_S": "2"}
    with serve(tmp_path, database_url, **env) as server, server.client() as c:
        invocation_id = submit(c, "cbfail", adhoc(["true"]),
                               headers={"X-Callback-Url": receiver.url()})
        assert wait_final(c, invocation_id)["status"] == "succeeded"
        final = wait_for(lambda: callback_state(c, invocation_id, "failed"), timeout=60,
                         why="callback failed")
        tries = len(receiver.got)
    callback = final["callback"]
    assert callback["delivered_at"] is None and callback["last_error"]
    assert callback["attempts"] >= 1 and tries == callback["attempts"]


def test_callback_without_a_key_signs_with_the_data_dir_key(
        bwrap_available: None, tmp_path: Path, receiver: Receiver) -> None:
    with serve(tmp_path, "", FAAS_CALLBACK_ALLOW_PRIVATE="1") as server, server.client() as c:
        invocation_id = submit(c, "cbkey", adhoc(["true"]),
                               headers={"X-Callback-Url": receiver.url()})
        wait_for(lambda: callback_state(c, invocation_id, "delivered"), timeout=60,
                 why="callback delivered")
    signature = receiver.got[0].headers["x-faas-signature"]
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    forged = hmac.new(KEY.encode(), receiver.got[0].body, hashlib.sha256).hexdigest()
    assert signature != f"sha256={forged}"


PRIVATE_TARGETS = ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.0.0.1/x",
                   "http://[::1]/x", "http://169.254.169.254/latest/meta-data",
                   "https://192.168.1.1/", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/"]
MALFORMED = ["ftp://example.com/x", "http://user:pw@example.com/x", "not a url",
             "http://", "https://example.com/" + "a" * 2100]


def test_private_and_malformed_callback_targets_are_refused(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url) as server, server.client() as c:
        for target in PRIVATE_TARGETS + MALFORMED:
            r = c.post("/functions/cbbad/invoke", json=adhoc(["true"]),
                       headers={**ASYNC, "X-Callback-Url": target})
            message = assert_error(r, 400)
            assert "169.254" not in message or target.startswith("http://169.254")
        # Callback and Idempotency-Key are for async calls only.
        for header in ({"X-Callback-Url": "https://example.com/hook"},
                       {"Idempotency-Key": "k1"}):
            assert_error(c.post("/functions/cbbad/invoke", json=adhoc(["true"]),
                                headers=header), 400)
        assert listed(c) == []
