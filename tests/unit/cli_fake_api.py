"""A narrow fake of the functions API for the CLI's unit tests: an ``httpx.MockTransport``.

It keeps deployed functions in a dict, records every request, and can be
told to answer the next call with a canned response instead. The real
server's behaviour is the end-to-end test's (tests/integration/test_cli_deploy.py).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import functools
import json
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

    @property
    def last(self) -> Seen:
        return self.seen[-1]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        seen = Seen(request.method, unquote(request.url.path),
                    list(request.url.params.multi_items()), raw_path=request.url.raw_path)
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


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def install_fake_api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    """A fake, wired into every client the CLI opens; FAAS_URL points at it."""
    fake = FakeApi()
    monkeypatch.setattr(faas.cli.common, "FaasClient",
                        functools.partial(FaasClient, transport=fake.transport()))
    monkeypatch.setenv("FAAS_URL", URL)
    return fake
