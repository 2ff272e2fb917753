"""The policies around async invocations and their records, end to end on a real server
(sandbox tier; SQLite and PostgreSQL): Idempotency-Key, the async queue's bound, record
retention, retries per the function's spec, and a function's max_concurrency."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import httpx
import pytest

from async_support import (
    ASYNC,
    adhoc,
    assert_error,
    finished_runs,
    listed,
    moment,
    serve,
    submit,
    wait_final,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.sandbox


async def _concurrent_posts(url: str, count: int, key: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        return list(await asyncio.gather(*(
            c.post("/functions/idem/invoke", json=adhoc(["sh", "-c", "sleep 0.5; echo once"]),
                   headers={**ASYNC, "Idempotency-Key": key}) for _ in range(count))))


def test_idempotency_key_runs_once_for_concurrent_repeats(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url) as server, server.client() as c:
        answers = asyncio.run(_concurrent_posts(server.url, 20, "order-42:a.b_c-d"))
        assert [r.status_code for r in answers] == [202] * 20, [r.text for r in answers]
        ids = {r.json()["invocation_id"] for r in answers}
        assert len(ids) == 1
        (invocation_id,) = ids
        assert {r.headers["location"] for r in answers} == {f"/invocations/{invocation_id}"}
        replayed = [r for r in answers if r.headers.get("idempotent-replayed") == "true"]
        assert len(replayed) == 19

        done = wait_final(c, invocation_id)
        assert done["status"] == "succeeded" and done["stdout"] == "once\n"
        assert done["attempts"] == 1
        # A repeat after the end: the same id, answered with its status now.
        again = c.post("/functions/idem/invoke", json=adhoc(["true"]),
                       headers={**ASYNC, "Idempotency-Key": "order-42:a.b_c-d"})
        assert again.status_code == 202
        assert again.json() == {"invocation_id": invocation_id, "status": "succeeded"}

        other = submit(c, "idem", adhoc(["true"]), headers={"Idempotency-Key": "other"})
        assert other != invocation_id
        wait_final(c, other)
        # The same key on another function is another call.
        elsewhere = submit(c, "idem2", adhoc(["true"]),
                           headers={"Idempotency-Key": "order-42:a.b_c-d"})
        assert elsewhere not in (invocation_id, other)
        wait_final(c, elsewhere)

        for bad in (b"k" * 129, b"k" * 200, b"has space", b"semi;colon", "é".encode(), b""):
            assert_error(c.post("/functions/idem/invoke", json=adhoc(["true"]),
                                headers=[(b"Prefer", b"respond-async"),
                                         (b"Idempotency-Key", bad)]), 400)
        items = listed(c, function="idem")
    assert sorted(i["id"] for i in items) == sorted([invocation_id, other])
    assert len(finished_runs(server, function="idem")) == 2
    assert len(finished_runs(server, request_id=done["request_id"])) == 1


def test_full_async_queue_answers_429(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    env = {"FAAS_MAX_ASYNC_QUEUE": "3", "FAAS_MAX_CONCURRENCY": "1"}
    with serve(tmp_path, database_url, **env) as server, server.client() as c:
        hog = submit(c, "q", adhoc(["sleep", "60"]))
        wait_status(c, hog, "running")
        queued = [submit(c, "q", adhoc(["echo", str(i)])) for i in range(3)]
        r = c.post("/functions/q/invoke", json=adhoc(["true"]), headers=ASYNC)
        assert_error(r, 429)
        assert int(r.headers["retry-after"]) >= 1
        assert len(listed(c, status="queued")) == 3
        # Room again once one leaves the queue.
        assert c.delete(f"/invocations/{queued[0]}").status_code == 200
        extra = submit(c, "q", adhoc(["echo", "extra"]))
        assert c.delete(f"/invocations/{hog}").status_code == 200
        results = [wait_final(c, i) for i in [*queued[1:], extra]]
    assert [d["stdout"] for d in results] == ["1\n", "2\n", "extra\n"]


def test_finished_records_are_pruned_after_their_ttl(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url, FAAS_RECORD_TTL_S="1") as server, server.client() as c:
        invocation_id = submit(c, "ttl", adhoc(["true"]))
        assert wait_final(c, invocation_id)["status"] == "succeeded"
        wait_for(lambda: c.get(f"/invocations/{invocation_id}").status_code == 404,
                 timeout=30, why="the record pruned")
        assert_error(c.get(f"/invocations/{invocation_id}"), 404)
        assert listed(c, function="ttl") == []


def test_retries_follow_the_functions_spec(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url) as server, server.client() as c:
        fails = ["sh", "-c", "echo try; exit 1"]
        for name, spec in {
            "retried": {"command": fails, "retry_failures": True, "max_attempts": 3},
            "not-retried": {"command": fails, "max_attempts": 3},
            "slow": {"command": ["sleep", "30"], "timeout_s": 1, "retry_timeouts": True,
                     "max_attempts": 2},
            "slow-once": {"command": ["sleep", "30"], "timeout_s": 1, "max_attempts": 3},
        }.items():
            r = c.put(f"/functions/{name}", json=spec)
            assert r.status_code in (200, 201), r.text
        ids = {name: submit(c, name) for name in ("retried", "not-retried", "slow", "slow-once")}
        done = {name: wait_final(c, i) for name, i in ids.items()}
    assert (done["retried"]["status"], done["retried"]["attempts"]) == ("failed", 3)
    assert done["retried"]["exit_code"] == 1 and done["retried"]["stdout"] == "try\n"
    assert done["retried"]["max_attempts"] == 3
    assert (done["not-retried"]["status"], done["not-retried"]["attempts"]) == ("failed", 1)
    assert (done["slow"]["status"], done["slow"]["attempts"]) == ("timed_out", 2)
    assert (done["slow-once"]["status"], done["slow-once"]["attempts"]) == ("timed_out", 1)
    assert len(finished_runs(server, function="retried")) == 3
    assert len(finished_runs(server, function="not-retried")) == 1
    assert len(finished_runs(server, function="slow")) == 2


def test_function_max_concurrency_serialises_async_calls(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url, FAAS_MAX_CONCURRENCY="4") as server, \
            server.client() as c:
        r = c.put("/functions/single", json={"command": ["sleep", "1"], "max_concurrency": 1})
        assert r.status_code in (200, 201), r.text
        ids = [submit(c, "single") for _ in range(5)]
        # Another function is not held back by it.
        free = wait_final(c, submit(c, "free", adhoc(["echo", "free"])))
        done = [wait_final(c, i) for i in ids]
    assert free["status"] == "succeeded"
    assert all(d["status"] == "succeeded" and d["attempts"] == 1 for d in done)
    spans = sorted((moment(d["started_at"]), moment(d["finished_at"])) for d in done)
    for (_, finished), (started, _) in itertools.pairwise(spans):
        assert started >= finished, spans
