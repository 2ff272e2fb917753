"""A narrow fake of the functions API for the CLI's unit tests: an ``httpx.MockTransport``.

It keeps deployed functions and invocation records in dicts, records every
request, and can be told to answer the next call with a canned response
instead. An asynchronous invoke (``Prefer: respond-async``) queues a record;
``add_record(..., finish_after=N, **final)`` makes one that turns final on
the Nth read. The real
server's behaviour is the end-to-end test's (tests/integration/test_cli_deploy.py).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import functools
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

import faas.cli.common
from faas.client import FaasClient

URL = "http://faas.test:8080"


@dataclass
class Seen:
    """One request as the fake saw it."""

    method: str
    path: str
    params: list[tuple[str, str]]
    json: Any = None
    parts: dict[str, bytes] = field(default_factory=dict)
    raw_path: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def multipart_parts(request: httpx.Request) -> dict[str, bytes]:
    """The parts of a multipart/form-data body, by name."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        head + request.content)
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str) and isinstance(payload, bytes)
        parts[name] = payload
    return parts


class FakeApi:
    def __init__(self) -> None:
        self.functions: dict[str, list[dict[str, Any]]] = {}
        self.seen: list[Seen] = []
        self.canned: list[httpx.Response] = []
        self.result: dict[str, Any] = {"stdout": "", "stderr": "", "exit_code": 0,
                                       "error": None, "timed_out": False}
        self.result_status = 200
        self.page_size = 2
        self.records: dict[str, dict[str, Any]] = {}
        #: id -> (reads left before it turns final, the fields it then takes)
        self.pending: dict[str, tuple[int, dict[str, Any]]] = {}
        self.idempotency: dict[tuple[str, str], str] = {}
        self._ids = itertools.count(1)

    @property
    def last(self) -> Seen:
        return self.seen[-1]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        seen = Seen(request.method, unquote(request.url.path),
                    list(request.url.params.multi_items()), raw_path=request.url.raw_path,
                    headers=dict(request.headers))
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            seen.parts = multipart_parts(request)
            seen.json = json.loads(seen.parts["spec"])
        elif request.content:
            seen.json = json.loads(request.content)
        self.seen.append(seen)
        if self.canned:
            return self.canned.pop(0)
        return self.route(seen)

    def route(self, seen: Seen) -> httpx.Response:
        parts = seen.path.strip("/").split("/")
        if parts[0] == "invocations":
            return self.invocation_route(seen, parts[1:])
        if (parts[2:] == ["invoke"]
                and "respond-async" in seen.headers.get("prefer", "").lower()):
            return self.invoke_async(seen, parts[1])
        if parts == ["functions"] and seen.method == "GET":
            return self.list(dict(seen.params))
        name = parts[1]
        versions = self.functions.get(name)
        if seen.method == "PUT":
            version = {"id": name, "version": len(versions or []) + 1,
                       "created_at": "2026-11-28T20:00:00Z", "spec": seen.json,
                       "bundle": None if "bundle" not in seen.parts else {
                           "sha256": "ab" * 32, "packed_bytes": len(seen.parts["bundle"]),
                           "unpacked_bytes": 1}}
            self.functions.setdefault(name, []).append(version)
            return httpx.Response(201, json=version)
        if parts[2:] == ["invoke"]:
            return httpx.Response(self.result_status, json=self.result)
        if versions is None:
            return httpx.Response(404, json={"error": f"function {name!r} not found"})
        if seen.method == "DELETE":
            del self.functions[name]
            return httpx.Response(204)
        if parts[2:3] == ["versions"]:
            return httpx.Response(200, json=versions[int(parts[3]) - 1])
        latest = versions[-1]
        return httpx.Response(200, json={
            "id": name, "latest_version": latest["version"],
            "versions": [v["version"] for v in versions], "created_at": "2026-11-28T20:00:00Z",
            "updated_at": latest["created_at"], "spec": latest["spec"],
            "bundle": latest["bundle"], "invocations": {"ok": 2}})

    def list(self, params: dict[str, str]) -> httpx.Response:
        names = sorted(self.functions)
        start = int(params.get("cursor", "0"))
        page = names[start:start + self.page_size]
        more = start + self.page_size < len(names)
        items = [{"id": n, "latest_version": self.functions[n][-1]["version"],
                  "description": self.functions[n][-1]["spec"].get("description"),
                  "labels": {}, "created_at": "x", "updated_at": "y"} for n in page]
        return httpx.Response(200, json={"items": items,
                                         "next_cursor": str(start + self.page_size)
                                         if more else None})


    # -- invocation records ------------------------------------------------------------

    def add_record(self, status: str = "queued", /, *, finish_after: int | None = None,
                   **final: Any) -> str:
        """A record in ``status``; with ``finish_after``, the Nth GET of it finds ``final``
        (default: succeeded, exit 0) applied."""
        n = next(self._ids)
        record_id = f"{n:032x}"
        self.records[record_id] = {
            "id": record_id, "request_id": f"req{n}", "function_id": final.pop("function_id",
                                                                               "hello"),
            "version": final.pop("version", 1), "mode": "async", "status": status,
            "accepted_at": f"2026-11-28T20:00:{n:02d}Z", "started_at": None,
            "finished_at": None, "queue_wait_ms": None, "duration_ms": None, "start": None,
            "executor": None, "exit_code": None, "signal": None, "error": None,
            "attempts": 0, "max_attempts": 1, "stdout": "", "stderr": "",
            "truncated": {"stdout": False, "stderr": False}, "callback": None}
        if finish_after is not None:
            self.pending[record_id] = (finish_after, {"status": "succeeded", "exit_code": 0,
                                                      **final})
        else:
            self.records[record_id].update(final)
        return record_id

    def invoke_async(self, seen: Seen, function_id: str) -> httpx.Response:
        key = seen.headers.get("idempotency-key")
        if key is not None and (function_id, key) in self.idempotency:
            first = self.idempotency[function_id, key]
            return httpx.Response(202, json={"invocation_id": first, "status": "queued"},
                                  headers={"Location": f"/invocations/{first}",
                                           "Idempotent-Replayed": "true"})
        version = dict(seen.params).get("version")
        record_id = self.add_record(function_id=function_id,
                                    version=int(version) if version else None)
        callback = seen.headers.get("x-callback-url")
        if callback is not None:
            self.records[record_id]["callback"] = {"url": callback, "state": "pending",
                                                   "attempts": 0, "last_error": None,
                                                   "delivered_at": None}
        if key is not None:
            self.idempotency[function_id, key] = record_id
        return httpx.Response(202, json={"invocation_id": record_id, "status": "queued"},
                              headers={"Location": f"/invocations/{record_id}"})

    def invocation_route(self, seen: Seen, rest: Sequence[str]) -> httpx.Response:
        if not rest:
            return self.list_records(dict(seen.params))
        record = self.records.get(rest[0])
        if record is None:
            return httpx.Response(404, json={"error": f"invocation {rest[0]!r} not found"})
        if seen.method == "DELETE":
            if record["status"] not in ("queued", "running"):
                return httpx.Response(409, json={"error": f"invocation already "
                                                          f"{record['status']}"})
            record.update(status="cancelled", error="cancelled by the client")
            self.pending.pop(record["id"], None)
            return httpx.Response(200, json=record)
        if record["id"] in self.pending:
            left, final = self.pending[record["id"]]
            if left <= 1:
                del self.pending[record["id"]]
                record.update(final)
            else:
                self.pending[record["id"]] = (left - 1, final)
        return httpx.Response(200, json=record)

    def list_records(self, params: dict[str, str]) -> httpx.Response:
        found = sorted(self.records.values(), key=lambda r: r["accepted_at"], reverse=True)
        for key, field_name in (("function", "function_id"), ("status", "status")):
            if key in params:
                found = [r for r in found if r[field_name] == params[key]]
        if "since" in params:
            found = [r for r in found if r["accepted_at"] >= params["since"]]
        start, limit = int(params.get("cursor", "0")), int(params.get("limit", "50"))
        page = [{k: v for k, v in r.items() if k not in ("stdout", "stderr")}
                for r in found[start:start + limit]]
        more = start + limit < len(found)
        return httpx.Response(200, json={"items": page,
                                         "next_cursor": str(start + limit) if more else None})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def install_fake_api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    """A fake, wired into every client the CLI opens; FAAS_URL points at it."""
    fake = FakeApi()
    monkeypatch.setattr(faas.cli.common, "FaasClient",
                        functools.partial(FaasClient, transport=fake.transport()))
    monkeypatch.setenv("FAAS_URL", URL)
    return fake
