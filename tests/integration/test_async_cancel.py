"""Cancelling invocations through ``DELETE /invocations/{id}`` on a real server (sandbox
tier; SQLite and PostgreSQL): a queued call never runs, a running one's sandbox is gone,
a running sync call's caller is told 409, and the answers for final/unknown/malformed ids."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from async_support import (
    adhoc,
    assert_error,
    finished_runs,
    listed,
    record,
    serve,
    submit,
    wait_final,
    wait_for,
    wait_status,
)
from helpers import assert_nothing_left_by, descendants

pytestmark = pytest.mark.sandbox


def test_cancelled_queued_call_never_runs(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url, FAAS_MAX_CONCURRENCY="1") as server, \
            server.client() as c:
        hog = submit(c, "hog", adhoc(["sleep", "60"]))
        wait_status(c, hog, "running")
        victim = submit(c, "victim", adhoc(["echo", "VICTIM-RAN"]))
        assert record(c, victim)["status"] == "queued"

        r = c.delete(f"/invocations/{victim}")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled" and r.json()["id"] == victim

        # Free the slot; a later call runs, so the dispatcher had its chance at the victim
        # (claims go oldest first).
        assert c.delete(f"/invocations/{hog}").json()["status"] == "cancelled"
        after = wait_final(c, submit(c, "after", adhoc(["echo", "after"])))
        assert after["status"] == "succeeded" and after["stdout"] == "after\n"

        gone = record(c, victim)
        victim_request = gone["request_id"]
        assert_error(c.delete(f"/invocations/{victim}"), 409)
    assert gone["status"] == "cancelled" and gone["started_at"] is None
    assert gone["stdout"] == "" and gone["attempts"] == 0 and gone["exit_code"] is None
    assert gone["finished_at"] is not None
    assert finished_runs(server, request_id=victim_request) == []
    assert "VICTIM-RAN" not in server.log()


def test_cancelled_running_call_loses_its_sandbox(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url) as server, server.client() as c:
        long = submit(c, "long", adhoc(["sleep", "60"]))
        wait_status(c, long, "running")
        pid = server.proc.pid
        # The check below would see it: the sandbox is a process below the server now.
        wait_for(lambda: [p for p in descendants(pid) if "sleep" in p.cmdline],
                 why="the sandboxed sleep")

        r = c.delete(f"/invocations/{long}")
        assert r.status_code == 200, r.text
        cancelled = r.json()
        assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
        assert_nothing_left_by(pid, settle_s=15)

        again = record(c, long)
        assert again["status"] == "cancelled"
        assert "cancel" in (again["error"] or "")
        assert_error(c.delete(f"/invocations/{long}"), 409)
        assert_error(c.delete(f"/invocations/{'f' * 32}"), 404)
        assert_error(c.delete("/invocations/nope"), 400)
        assert_error(c.delete("/invocations/" + "0" * 31), 400)
        # Final records of every kind refuse a cancel.
        done = wait_final(c, submit(c, "long", adhoc(["true"])))
        assert_error(c.delete(f"/invocations/{done['id']}"), 409)
        assert record(c, done["id"])["status"] == "succeeded"


def test_cancelling_a_running_sync_call_answers_its_caller_409(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    answers: list[httpx.Response] = []

    with serve(tmp_path, database_url) as server, server.client() as c:
        def call() -> None:
            with server.client(timeout=120) as own:
                answers.append(own.post("/functions/blocking/invoke",
                                        json=adhoc(["sleep", "60"])))

        caller = threading.Thread(target=call)
        caller.start()
        try:
            running = wait_for(lambda: listed(c, status="running", function="blocking"),
                               why="the running sync call in the list")
            assert len(running) == 1 and running[0]["mode"] == "sync"
            invocation_id = running[0]["id"]
            assert invocation_id in {i["id"] for i in listed(c)}
            assert listed(c, status="queued") == []
            assert listed(c, function="other") == []
            page = c.get("/invocations", params={"limit": 1}).json()
            assert [i["id"] for i in page["items"]] == [invocation_id]
            assert record(c, invocation_id)["status"] == "running"
            r = c.delete(f"/invocations/{invocation_id}")
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "cancelled"
        finally:
            caller.join(90)
        assert not caller.is_alive()
        assert len(answers) == 1
        assert_error(answers[0], 409)
        assert answers[0].headers.get("x-invocation-id") in (None, invocation_id)
        final = wait_for(lambda: (lambda f: f if f["status"] == "cancelled" else None)(
            record(c, invocation_id)), why="the cancelled sync record")
        assert final["mode"] == "sync"
        assert_nothing_left_by(server.proc.pid, settle_s=15)
