"""Asynchronous invocations end to end: a real ``faas serve`` (sandbox tier) on SQLite and
on a private PostgreSQL. 202 + Location, polling and long-polling the record, ad hoc and
deployed functions, validation before anything is queued, sync calls' records."""

from __future__ import annotations

from pathlib import Path

import pytest

from async_support import (
    ASYNC,
    FINAL,
    HEX32,
    adhoc,
    assert_error,
    assert_ordered_times,
    listed,
    record,
    serve,
    submit,
    wait_final,
    wait_for,
)

pytestmark = pytest.mark.sandbox


SLOW_HI = adhoc(["sh", "-c", "sleep 1; echo hi"])


@pytest.mark.parametrize("how", ["prefer", "prefer-list", "query-true", "query-1"])
def test_async_call_is_accepted_then_runs_to_success(
        bwrap_available: None, tmp_path: Path, database_url: str, how: str) -> None:
    headers = {"prefer": {"Prefer": "respond-async"},
               "prefer-list": {"Prefer": "return=minimal, RESPOND-ASYNC"}}.get(how, {})
    params = {"query-true": {"async": "true"}, "query-1": {"async": "1"}}.get(how, {})
    with serve(tmp_path, database_url) as server, server.client() as c:
        r = c.post("/functions/adhoc-fn/invoke", json=SLOW_HI, headers=headers, params=params)
        assert r.status_code == 202, r.text
        invocation_id = r.json()["invocation_id"]
        assert HEX32.fullmatch(invocation_id)
        assert r.json() == {"invocation_id": invocation_id, "status": "queued"}
        assert r.headers["location"] == f"/invocations/{invocation_id}"
        request_id = r.headers["x-request-id"]

        first = c.get(r.headers["location"]).json()
        assert first["status"] in ("queued", "running"), first
        done = wait_final(c, invocation_id)
    assert done["status"] == "succeeded", done
    assert done["id"] == invocation_id and done["request_id"] == request_id
    assert done["function_id"] == "adhoc-fn" and done["version"] is None
    assert done["mode"] == "async" and done["attempts"] == 1
    assert done["stdout"] == "hi\n" and done["stderr"] == "" and done["exit_code"] == 0
    assert done["executor"] == "sandbox" and done["error"] is None
    assert done["duration_ms"] > 0 and done["queue_wait_ms"] >= 0
    assert_ordered_times(done)


def test_deployed_function_async_records_its_version(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url) as server, server.client() as c:
        r = c.put("/functions/greet", json={"command": ["echo", "one"]})
        assert r.status_code in (200, 201), r.text
        r = c.put("/functions/greet", json={"command": ["echo", "two"]})
        assert r.status_code in (200, 201), r.text
        latest = wait_final(c, submit(c, "greet"))
        pinned = wait_final(c, submit(c, "greet", version=1))
        by_query = c.post("/functions/greet/invoke", params={"async": "true"}, json={})
        assert by_query.status_code == 202, by_query.text
        third = wait_final(c, by_query.json()["invocation_id"])
    assert (latest["status"], latest["version"], latest["stdout"]) == ("succeeded", 2, "two\n")
    assert (pinned["status"], pinned["version"], pinned["stdout"]) == ("succeeded", 1, "one\n")
    assert (third["version"], third["stdout"]) == (2, "two\n")
    for done in (latest, pinned, third):
        assert done["mode"] == "async" and done["attempts"] == 1
        assert done["function_id"] == "greet"
        assert_ordered_times(done)


def test_bad_async_calls_are_refused_at_once_and_nothing_is_queued(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url, FAAS_MAX_PAYLOAD_BYTES="1000") as server, \
            server.client() as c:
        invoke = "/functions/bad/invoke"
        assert_error(c.post(invoke, content=b"{not json", headers=ASYNC), 400)
        assert_error(c.post(invoke, json={"no": "command"}, headers=ASYNC), 400)
        assert_error(c.post(invoke, json=adhoc([]), headers=ASYNC), 400)
        assert_error(c.post(invoke, json=adhoc(["true"], timeout_s=-1), headers=ASYNC), 400)
        message = assert_error(c.post(invoke, json=adhoc(["true"], executor="nope"),
                                      headers=ASYNC), 400)
        assert "nope" in message or "executor" in message
        assert_error(c.post(invoke, json=adhoc(["true"]), params={"async": "maybe"}), 400)
        assert_error(c.post("/functions/bad id/invoke", json=adhoc(["true"]), headers=ASYNC),
                     400)
        assert_error(c.post(invoke, json=adhoc(["true"]), headers=ASYNC,
                            params={"version": "1"}), 404)
        assert_error(c.post(invoke, json=adhoc(["true"], payload="x" * 2000),
                            headers=ASYNC), 413)
        assert listed(c) == []
        # The same server still accepts a good one.
        assert wait_final(c, submit(c, "bad", adhoc(["true"])))["status"] == "succeeded"
        assert len(listed(c)) == 1


def test_sync_call_has_a_record_named_in_its_header(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url) as server, server.client() as c:
        r = c.post("/functions/syncy/invoke", json=adhoc(["sh", "-c", "echo out; exit 3"]))
        assert r.status_code == 200, r.text
        invocation_id = r.headers["x-invocation-id"]
        assert HEX32.fullmatch(invocation_id)
        # Written in the background: it appears shortly after the answer.
        found = wait_for(lambda: (lambda g: g.json() if g.status_code == 200 else None)(
            c.get(f"/invocations/{invocation_id}")), why="the sync record")
        assert [item["id"] for item in listed(c, function="syncy")] == [invocation_id]
    assert found["mode"] == "sync" and found["status"] == "failed"
    assert found["exit_code"] == 3 and found["stdout"] == "out\n"
    assert found["request_id"] == r.headers["x-request-id"] and found["attempts"] == 1
    assert found["function_id"] == "syncy" and found["version"] is None
    assert_ordered_times(found)


def test_records_off_keeps_sync_calls_unrecorded_but_async_works(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url, FAAS_RECORDS="0") as server, server.client() as c:
        r = c.post("/functions/plain/invoke", json=adhoc(["echo", "sync"]))
        assert r.status_code == 200 and r.json()["stdout"] == "sync\n", r.text
        assert "x-invocation-id" not in r.headers
        done = wait_final(c, submit(c, "plain", adhoc(["echo", "async"])))
        assert done["status"] == "succeeded" and done["stdout"] == "async\n"
        # Another sync call after the async one ended: still nothing recorded for either.
        assert c.post("/functions/plain/invoke", json=adhoc(["true"])).status_code == 200
        items = listed(c)
    assert [item["id"] for item in items] == [done["id"]]


def test_long_poll_returns_the_final_record_or_the_current_state(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url) as server, server.client() as c:
        quick = submit(c, "lp", SLOW_HI)
        r = c.get(f"/invocations/{quick}", params={"wait": 10})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "succeeded" and r.json()["stdout"] == "hi\n"
        # A final record answers at once whatever the wait.
        assert c.get(f"/invocations/{quick}", params={"wait": 60}).json()["status"] in FINAL

        slow = submit(c, "lp", adhoc(["sleep", "30"]))
        r = c.get(f"/invocations/{slow}", params={"wait": 0.5})
        assert r.status_code == 200, r.text
        assert r.json()["status"] in ("queued", "running"), r.text

        for bad in ("60.5", "61", "-1", "abc", "nan", "inf"):
            assert_error(c.get(f"/invocations/{slow}", params={"wait": bad}), 400)
        assert c.delete(f"/invocations/{slow}").json()["status"] == "cancelled"
        assert record(c, slow)["status"] == "cancelled"


def test_record_lookups_and_list_filters(
        bwrap_available: None, tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url) as server, server.client() as c:
        ok = wait_final(c, submit(c, "alpha", adhoc(["true"])))
        bad = wait_final(c, submit(c, "beta", adhoc(["false"])))
        assert_error(c.get(f"/invocations/{'0' * 32}"), 404)
        assert_error(c.get("/invocations/not-an-id"), 400)
        assert_error(c.get("/invocations/" + "A" * 32), 400)
        assert_error(c.get("/invocations", params={"status": "weird"}), 400)
        assert_error(c.get("/invocations", params={"limit": 0}), 400)
        assert_error(c.get("/invocations", params={"limit": 201}), 400)
        assert_error(c.get("/invocations", params={"since": "yesterday"}), 400)
        assert [i["id"] for i in listed(c)] == [bad["id"], ok["id"]]  # newest first
        assert [i["id"] for i in listed(c, function="alpha")] == [ok["id"]]
        assert [i["id"] for i in listed(c, status="failed")] == [bad["id"]]
        assert listed(c, since=bad["finished_at"]) == []
        assert [i["id"] for i in listed(c, since=ok["accepted_at"])] == [bad["id"], ok["id"]]
        page = c.get("/invocations", params={"limit": 1}).json()
        assert [i["id"] for i in page["items"]] == [bad["id"]] and page["next_cursor"]
        rest = c.get("/invocations", params={"limit": 1, "cursor": page["next_cursor"]}).json()
        assert [i["id"] for i in rest["items"]] == [ok["id"]]
        assert all("stdout" not in i and "stderr" not in i for i in listed(c))
    assert bad["status"] == "failed" and bad["exit_code"] == 1
