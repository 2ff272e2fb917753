"""Hostile callers of the functions API, against a real ``faas serve`` over real sockets.

Every refusal is a 4xx with a JSON ``error`` (no traceback in the log, no host
path in the answer), and a refused upload leaves nothing on disk.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import Server, running_server

pytestmark = pytest.mark.sandbox

BUNDLE_LIMIT = 64 * 1024
READ_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def hostile(bwrap_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("functions-hostile")
    env = {"FAAS_EXECUTORS": "sandbox", "FAAS_HTTP_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
           "FAAS_MAX_BUNDLE_BYTES": str(BUNDLE_LIMIT)}
    with running_server(tmp, env) as srv:
        yield srv
    assert srv.proc.returncode == 0, srv.log()


def data_dir(server: Server) -> Path:
    """``running_server`` gives each server ``data`` beside its log."""
    return server.log_path.parent / "data"


def assert_refused(r: httpx.Response, status: int, *mentions: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert isinstance(body["error"], str)
    for word in mentions:
        assert word in r.text, (word, r.text)
    assert "/tmp" not in r.text and "Traceback" not in r.text
    return body


def put(server: Server, function_id: str, **kwargs: Any) -> httpx.Response:
    with server.client(30) as c:
        return c.put(f"/functions/{function_id}", **kwargs)


def bundles_on_disk(server: Server) -> list[str]:
    root = data_dir(server) / "bundles"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_oversize_spec_json_is_413(hostile: Server) -> None:
    body = json.dumps({"command": ["true"], "description": "x" * 600_000})
    assert_refused(put(hostile, "big", content=body,
                       headers={"content-type": "application/json"}), 413)


def test_ten_thousand_labels_are_one_clear_400(hostile: Server) -> None:
    labels = {f"k{i}": "v" for i in range(10_000)}
    body = assert_refused(put(hostile, "labels", json={"command": ["true"], "labels": labels}),
                          400)
    assert body["problems"] == ["labels: must be an object of at most 64 labels"]


def test_every_spec_problem_is_named_in_one_answer(hostile: Server) -> None:
    body = assert_refused(put(hostile, "many", json={
        "command": [], "memory_mb": 10**9, "executor": "nope", "max_concurrency": 0,
        "content_type": "text/plain\r\nSet-Cookie: x=1", "env_vars": {"1BAD": "x"},
        "surprise": 1}), 400)
    fields = sorted(p.split(":")[0] for p in body["problems"])
    assert fields == ["command", "content_type", "env_vars", "executor", "max_concurrency",
                      "memory_mb", "spec"]
    assert (put(hostile, "many", json={"command": ["true"]})).status_code == 201


@pytest.mark.parametrize("body", [b"\xff\xfe{\"command\": [\"true\"]}",
                                  b'{"command": ["\xc3("]}', b"", b"[]", b"null"])
def test_non_utf8_or_non_object_spec_is_400(hostile: Server, body: bytes) -> None:
    assert_refused(put(hostile, "enc", content=body,
                       headers={"content-type": "application/json"}), 400)


def test_unknown_content_type_is_415(hostile: Server) -> None:
    assert_refused(put(hostile, "ct", content=b"x", headers={"content-type": "text/plain"}),
                   415)


def multipart(*parts: bytes, boundary: str = "XyZ") -> bytes:
    return b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts) \
        + b"--" + boundary.encode() + b"--\r\n"


SPEC_PART = (b'Content-Disposition: form-data; name="spec"\r\n\r\n'
             b'{"command": ["true"]}')


@pytest.mark.parametrize("content_type, body, mention", [
    ("multipart/form-data", multipart(SPEC_PART), "boundary"),
    ("multipart/form-data; boundary=" + "b" * 71, multipart(SPEC_PART), "boundary"),
    ("multipart/form-data; boundary=XyZ", multipart(SPEC_PART, SPEC_PART), "more than one"),
    ("multipart/form-data; boundary=XyZ",
     multipart(b"Content-Disposition: form-data; name=\"spec\"\r\nX-Pad: " + b"a" * 20_000
               + b"\r\n\r\n{}"), "headers exceed"),
    ("multipart/form-data; boundary=XyZ",
     multipart(b"Content-Disposition: form-data; name=\"bundle\"\r\n\r\nxx", SPEC_PART),
     "spec part must come before"),
    ("multipart/form-data; boundary=XyZ",
     multipart(b"Content-Disposition: form-data; name=\"other\"\r\n\r\nxx"), "unknown"),
    ("multipart/form-data; boundary=XyZ", b"--XyZ\r\n" + SPEC_PART, "ends inside"),
    ("multipart/form-data; boundary=XyZ", b"no boundary anywhere", "boundary not found"),
])
def test_malformed_multipart_is_a_clear_400(hostile: Server, content_type: str, body: bytes,
                                            mention: str) -> None:
    assert_refused(put(hostile, "mp", content=body, headers={"content-type": content_type}),
                   400, mention)
    assert bundles_on_disk(hostile) == []


def test_a_bundle_over_the_limit_is_413_and_nothing_stays_on_disk(hostile: Server) -> None:
    r = put(hostile, "huge", files={"spec": (None, '{"command": ["true"]}'),
                                    "bundle": ("b.tar", os.urandom(BUNDLE_LIMIT + 1))})
    assert_refused(r, 413)
    assert bundles_on_disk(hostile) == []
    with hostile.client() as c:
        assert c.get("/functions/huge").status_code == 404


def test_a_zip_slip_archive_is_a_400_naming_the_entry(hostile: Server) -> None:
    import io
    import zipfile
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("../../etc/cron.d/x", "boom")
    r = put(hostile, "slip", files={"spec": (None, '{"command": ["true"]}'),
                                    "bundle": ("x.zip", out.getvalue())})
    assert_refused(r, 400, "cron.d")
    assert bundles_on_disk(hostile) == []


def test_a_slow_upload_is_408_and_leaves_nothing(hostile: Server) -> None:
    body = multipart(SPEC_PART, b'Content-Disposition: form-data; name="bundle"; '
                     b'filename="b.tar"\r\n\r\n' + b"x" * 1000)
    head = (f"PUT /functions/slow HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: multipart/form-data; boundary=XyZ\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", hostile.port), timeout=10) as sock:
        sock.sendall(head + body[:300])
        started = time.monotonic()
        for i in range(300, 400):  # a byte a tenth of a second: never done in time
            try:
                sock.sendall(body[i:i + 1])
            except OSError:
                break
            time.sleep(0.1)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < READ_TIMEOUT_S + 5
    assert bundles_on_disk(hostile) == []


@pytest.mark.parametrize("body, named", [({"command": ["id"]}, "command"),
                                         ({"image": "evil"}, "image")])
def test_command_in_a_deployed_invoke_is_400_naming_it(hostile: Server, body: dict[str, Any],
                                                       named: str) -> None:
    assert put(hostile, "fixed", json={"command": ["true"]}).status_code == 201
    with hostile.client() as c:
        assert_refused(c.post("/functions/fixed/invoke", json=body), 400, named)


def test_pinning_a_missing_version_is_404(hostile: Server) -> None:
    assert put(hostile, "pin", json={"command": ["true"]}).status_code == 201
    with hostile.client() as c:
        assert_refused(c.post("/functions/pin/invoke?version=2", json={}), 404, "no version 2")
        assert_refused(c.post("/functions/pin/invoke?version=99999999999", json={}), 400)
        assert_refused(c.post("/function/pin?version=7"), 404)


def test_the_raw_route_bounds_a_hostile_query_string(hostile: Server) -> None:
    assert put(hostile, "q", json={"command": ["sh", "-c", 'printf %s "$Http_Query"']}
               ).status_code == 201
    with hostile.client() as c:
        assert_refused(c.post("/function/q?" + "a" * 5000), 400, "Http_Query")
        r = c.post("/function/q?x=%0d%0aInjected:%201")
        assert r.status_code == 200 and r.text == "x=%0d%0aInjected:%201"
    log = hostile.log()
    assert "Traceback" not in log
