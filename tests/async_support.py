"""Shared by the end-to-end tests of asynchronous invocations and invocation records
(tests/integration/test_async_*.py, test_invocation_records.py): a real ``faas serve``
on the sandbox tier, on SQLite or on a private PostgreSQL, and small HTTP helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from helpers import Server, assert_no_host_details, assert_nothing_left_by, running_server
from pg_cluster import PgCluster, create_database, drop_database

T = TypeVar("T")
HEX32 = re.compile(r"[0-9a-f]{32}")
FINAL = {"succeeded", "failed", "timed_out", "error", "cancelled"}
ASYNC = {"Prefer": "respond-async"}
BASE_ENV = {"FAAS_EXECUTORS": "sandbox", "FAAS_SHUTDOWN_GRACE_S": "2"}


@contextlib.contextmanager
def fresh_database(cluster: PgCluster) -> Iterator[str]:
    """An empty database of its own in the private cluster, dropped after."""
    name = f"t_{uuid.uuid4().hex}"
    url = asyncio.run(create_database(cluster, name))
    try:
        yield url
    finally:
        asyncio.run(drop_database(cluster, name))


@contextlib.contextmanager
def serve(tmp_path: Path, database_url: str, **env: str) -> Iterator[Server]:
    """A real server on the given store ("" = SQLite in its data dir); when the test
    ends, nothing may be left below it, and it must stop cleanly."""
    full = {**BASE_ENV, **env}
    if database_url:
        full["FAAS_DATABASE_URL"] = database_url
    with running_server(tmp_path, full) as server:
        yield server
        assert_nothing_left_by(server.proc.pid, settle_s=15)
        code = server.stop()
        assert code == 0, server.log()[-4000:]


def adhoc(command: list[str], **fields: Any) -> dict[str, Any]:
    return {"command": command, **fields}


def submit(client: httpx.Client, function_id: str, body: Any = None,
           headers: dict[str, str] | None = None, **params: Any) -> str:
    """An async call that must be accepted: its invocation id."""
    r = client.post(f"/functions/{function_id}/invoke", json={} if body is None else body,
                    headers={**ASYNC, **(headers or {})}, params=params)
    assert r.status_code == 202, r.text
    invocation_id = str(r.json()["invocation_id"])
    assert HEX32.fullmatch(invocation_id)
    assert r.headers["location"] == f"/invocations/{invocation_id}"
    return invocation_id


def record(client: httpx.Client, invocation_id: str) -> dict[str, Any]:
    r = client.get(f"/invocations/{invocation_id}")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


def wait_final(client: httpx.Client, invocation_id: str,
               timeout: float = 90.0) -> dict[str, Any]:
    """Long-poll until the record is final (generous deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/invocations/{invocation_id}", params={"wait": 10})
        assert r.status_code == 200, r.text
        found: dict[str, Any] = r.json()
        if found["status"] in FINAL:
            return found
        assert time.monotonic() < deadline, f"not final in {timeout}s: {found}"


def wait_for(what: Callable[[], T | None], timeout: float = 30.0,
             why: str = "condition") -> T:
    """Poll ``what`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        assert time.monotonic() < deadline, f"{why}: not within {timeout}s"
        time.sleep(0.05)


def wait_until(condition: Callable[[], bool], within_s: float) -> float:
    """Poll ``condition`` until it holds; the seconds it took (AssertionError past
    ``within_s``)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within_s:
            raise AssertionError(f"not within {within_s} s")
        time.sleep(0.05)
    return time.monotonic() - start


def wait_status(client: httpx.Client, invocation_id: str, status: str,
                timeout: float = 30.0) -> dict[str, Any]:
    return wait_for(lambda: (lambda r: r if r["status"] == status else None)(
        record(client, invocation_id)), timeout, f"{invocation_id} {status}")


def listed(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/invocations", params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def assert_error(r: httpx.Response, status: int) -> str:
    """A JSON error body with ``error`` and no host details; its message."""
    assert r.status_code == status, f"{r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    message = r.json()["error"]
    assert isinstance(message, str) and message
    assert_no_host_details(r.text)
    return message


def moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def assert_ordered_times(found: dict[str, Any]) -> None:
    accepted, started = moment(found["accepted_at"]), moment(found["started_at"])
    assert accepted <= started <= moment(found["finished_at"]), found


def finished_runs(server: Server, **fields: str) -> list[dict[str, Any]]:
    """The orchestrator's "invocation finished" log lines (one per run) matching ``fields``
    (a ``function`` without a tenant is the default tenant's: the log names qualified ids)."""
    if "function" in fields and "/" not in fields["function"]:
        fields = {**fields, "function": f"default/{fields['function']}"}
    runs = []
    for line in server.log().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("msg") == "invocation finished" and all(
                    entry.get(k) == v for k, v in fields.items()):
                runs.append(entry)
    return runs
