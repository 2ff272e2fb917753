"""Nothing accepted is ever lost: real ``faas serve`` processes killed for real (SIGKILL,
SIGTERM, a grace that runs out), then another server started on the same store; on
SQLite (the data folder) and on a private PostgreSQL.

Every call carries a unique marker (its payload, echoed back) and request id; the
orchestrator logs one ``invocation finished`` line per run with that request id, so the
logs of both servers say how many times each call really ran.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_support import fresh_database
from faas.store import open_store
from faas.store.invocation_records import InvocationRecord
from helpers import (
    ProcInfo,
    Server,
    assert_nothing_left_by,
    busy_cgroups_of,
    cgroup_dirs,
    descendants,
    open_data_dir,
    process_table,
    running_server,
)
from pg_cluster import PgCluster

pytestmark = pytest.mark.sandbox

FINAL = {"succeeded", "failed", "timed_out", "error", "cancelled"}
#: Sleeps until the epoch second its payload starts with, then prints the rest: long
#: enough to be running when its server is killed, short when run again after a restart.
UNTIL = ["sh", "-c",
         'read end mark; while [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done; echo "$mark"']
#: Generous: other test runs share this (2-core) machine.
WAIT_S = 180.0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with open_data_dir() as data:
        yield data


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {"FAAS_EXECUTORS": "sandbox", **extra}
    if database_url:
        env["FAAS_DATABASE_URL"] = database_url
    return env


# -- calls and records ---------------------------------------------------------------


def deploy(c: httpx.Client, function_id: str, command: list[str], **spec: Any) -> None:
    r = c.put(f"/functions/{function_id}", json={"command": command, **spec})
    assert r.status_code == 201, r.text


def submit(c: httpx.Client, function_id: str, payload: str) -> str:
    """Queue an async call with a unique request id; return its invocation id."""
    r = c.post(f"/functions/{function_id}/invoke", params={"async": "true"},
               headers={"X-Request-Id": f"dur-{uuid.uuid4().hex}"},
               json={"payload": base64.b64encode(payload.encode()).decode()})
    assert r.status_code == 202, r.text
    return str(r.json()["invocation_id"])


def records(c: httpx.Client, status: str | None = None) -> dict[str, dict[str, Any]]:
    """Every record the server lists (all pages), by id."""
    found: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if status is not None:
            params["status"] = status
        if cursor is not None:
            params["cursor"] = cursor
        r = c.get("/invocations", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        found.update((item["id"], item) for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def full_records(c: httpx.Client, ids: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for invocation_id in ids:
        r = c.get(f"/invocations/{invocation_id}")
        assert r.status_code == 200, r.text
        out[invocation_id] = r.json()
    return out


def wait_for(what: str, check: Callable[[], bool], detail: Callable[[], object],
             timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {detail()}")
        time.sleep(0.1)


def wait_until_busy(server: Server, c: httpx.Client, running: int, queued: int) -> None:
    """``running`` calls claimed, each in its own live sandbox, and ``queued`` waiting."""
    def state() -> tuple[int, int, int]:
        ended = [r for r in records(c).values() if r["status"] in FINAL]
        assert not ended, f"calls ended before the server was stopped: {ended}"
        return (len(records(c, "running")), len(records(c, "queued")),
                len(sandboxes_of(server.proc.pid)))
    wait_for(f"{running} running (in sandboxes) and {queued} queued",
             lambda: state() == (running, queued, running), state, timeout=60)


def sandboxes_of(pid: int) -> set[str]:
    """The server's busy per-call groups (one name per sandbox, in every hierarchy)."""
    return {Path(g).name for g in busy_cgroups_of(pid)}


def wait_all_final(c: httpx.Client, ids: list[str]) -> dict[str, dict[str, Any]]:
    def pending() -> dict[str, str]:
        listed = records(c)
        return {i: listed[i]["status"] if i in listed else "missing" for i in ids
                if i not in listed or listed[i]["status"] not in FINAL}
    wait_for(f"{len(ids)} calls to end", lambda: not pending(), pending)
    return full_records(c, ids)


def runs(*servers: Server) -> Counter[str]:
    """request id -> how many runs ended, over the servers' logs."""
    counts: Counter[str] = Counter()
    for line in "\n".join(s.log() for s in servers).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("msg") == "invocation finished":
            counts[str(entry.get("request_id"))] += 1
    return counts


def read_store(database_url: str, data_dir: Path, ids: list[str]) -> dict[str, InvocationRecord]:
    """The records as the store holds them, read without a server (which would run them)."""
    async def read() -> dict[str, InvocationRecord]:
        store = await open_store(database_url or None, data_dir)
        try:
            return {i: await store.invocations.get(i) for i in ids}
        finally:
            await store.close()
    return asyncio.run(read())


# -- killing -------------------------------------------------------------------------


def kill_hard(server: Server) -> list[ProcInfo]:
    """SIGKILL the server and wait until it is dead, leaving it unreaped (a zombie: the
    next start must judge it gone all the same); return what ran below it."""
    below = descendants(server.proc.pid)
    assert below, "nothing ran below the server"
    server.proc.kill()
    os.waitid(os.P_PID, server.proc.pid, os.WEXITED | os.WNOWAIT)
    return below


def still_alive(procs: list[ProcInfo]) -> list[str]:
    table = process_table()
    return [str(p) for p in procs if p.pid in table and table[p.pid].cmdline == p.cmdline]


def groups_of(pid: int) -> list[str]:
    return [str(g) for g in cgroup_dirs() if g.name.startswith(f"g{pid}x")]


# -- 1. kill -9 --------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["retried", "once"])
def test_kill_9_loses_no_call_and_runs_each_queued_one_once(
        bwrap_available: None, tmp_path: Path, data_dir: Path, database_url: str,
        policy: str) -> None:
    """54 accepted calls (4 running, 50 queued) survive a SIGKILL of their server: the
    next server on the store runs every queued one exactly once, and handles the 4 that
    were running per their policy (run again, or ``error`` when no attempt is left)."""
    env = server_env(database_url, FAAS_MAX_CONCURRENCY="4")
    slow_spec: dict[str, Any] = {"timeout_s": 120}
    if policy == "once":
        slow_spec["max_attempts"] = 1
    with running_server(tmp_path, env, data_dir) as first, first.client() as c:
        deploy(c, "slow", UNTIL, **slow_spec)
        deploy(c, "quick", ["cat"])
        end = int(time.time()) + 15
        slow = {submit(c, "slow", f"{end} slow-{i}\n"): f"slow-{i}\n" for i in range(4)}
        quick = {}
        for i in range(50):
            marker = f"quick-{i}-{uuid.uuid4().hex}"
            quick[submit(c, "quick", marker)] = marker
        wait_until_busy(first, c, running=4, queued=50)
        accepted = records(c)
        below = kill_hard(first)
        ids = [*slow, *quick]
        assert set(accepted) == set(ids)
        rid = {i: accepted[i]["request_id"] for i in ids}

        with running_server(tmp_path, env, data_dir) as second, second.client() as c2:
            # The killed server's sandboxes died with it; its groups were swept at this start.
            wait_for("the killed server's sandboxes to go", lambda: not still_alive(below),
                     lambda: still_alive(below), timeout=30)
            assert groups_of(first.proc.pid) == []
            final = wait_all_final(c2, ids)
            assert set(records(c2)) == set(ids), "a record was lost or made up"
            assert records(c2, "queued") == {} and records(c2, "running") == {}
            assert_nothing_left_by(second.proc.pid, settle_s=30)
            assert second.stop() == 0
    ran = runs(first, second)

    for invocation_id, marker in quick.items():
        record = final[invocation_id]
        assert (record["status"], record["attempts"], record["stdout"]) == (
            "succeeded", 1, marker), record
        assert ran[rid[invocation_id]] == 1, (record, ran[rid[invocation_id]])
    for invocation_id, output in slow.items():
        record = final[invocation_id]
        if policy == "retried":
            assert (record["status"], record["attempts"], record["max_attempts"]) == (
                "succeeded", 2, 3), record
            assert record["stdout"] == output
            assert ran[rid[invocation_id]] == 1  # the killed run logged nothing
        else:
            assert (record["status"], record["attempts"], record["max_attempts"]) == (
                "error", 1, 1), record
            assert "platform restarted" in record["error"], record
            assert ran[rid[invocation_id]] == 0
    assert still_alive(below) == [] and busy_cgroups_of(first.proc.pid) == []


# -- 2. SIGTERM within the grace ---------------------------------------------------------


def test_sigterm_finishes_running_calls_and_keeps_queued_ones(
        bwrap_available: None, tmp_path: Path, data_dir: Path, database_url: str) -> None:
    """SIGTERM: the running calls end within the grace (succeeded), the server exits 0,
    the queued calls stay queued in the store, untouched, and the next server runs each
    of them exactly once. Nothing new is accepted once the shutdown began."""
    env = server_env(database_url, FAAS_MAX_CONCURRENCY="2", FAAS_SHUTDOWN_GRACE_S="90")
    with running_server(tmp_path, env, data_dir) as first, first.client() as c:
        deploy(c, "slow", UNTIL, timeout_s=120)
        deploy(c, "quick", ["cat"])
        end = int(time.time()) + 8
        running = {submit(c, "slow", f"{end} slow-{i}\n"): f"slow-{i}\n" for i in range(2)}
        queued = {}
        for i in range(5):
            marker = f"queued-{i}-{uuid.uuid4().hex}"
            queued[submit(c, "quick", marker)] = marker
        wait_until_busy(first, c, running=2, queued=5)
        accepted = records(c)
        first.proc.send_signal(signal.SIGTERM)
        wait_for("the shutdown to begin", lambda: "shutdown: waiting for" in first.log(),
                 lambda: first.log()[-2000:], timeout=30)
        try:
            late = c.post("/functions/quick/invoke", params={"async": "true"}, json={})
        except httpx.TransportError:
            pass  # the listener is closed: refused before any request
        else:
            assert late.status_code == 503, late.text
        assert first.proc.wait(WAIT_S) == 0, first.log()[-4000:]
    ids = [*running, *queued]
    assert set(accepted) == set(ids)
    rid = {i: accepted[i]["request_id"] for i in ids}

    stored = read_store(database_url, data_dir, ids)
    assert len({r.id for r in stored.values()}) == len(ids)  # the refused call made no row
    for invocation_id, output in running.items():
        row = stored[invocation_id]
        assert (row.status, row.attempts, row.stdout.decode()) == ("succeeded", 1, output), row
    for invocation_id in queued:
        row = stored[invocation_id]
        assert (row.status, row.attempts, row.owner) == ("queued", 0, None), row
    ran_first = runs(first)
    assert all(ran_first[rid[i]] == 1 for i in running)
    assert all(ran_first[rid[i]] == 0 for i in queued)

    with running_server(tmp_path, env, data_dir) as second, second.client() as c:
        final = wait_all_final(c, ids)
        assert set(records(c)) == set(ids)
        assert_nothing_left_by(second.proc.pid, settle_s=30)
    ran = runs(first, second)
    for invocation_id, marker in queued.items():
        record = final[invocation_id]
        assert (record["status"], record["attempts"], record["stdout"]) == (
            "succeeded", 1, marker), record
        assert ran[rid[invocation_id]] == 1
    assert all(ran[rid[i]] == 1 for i in running)


# -- 3. SIGTERM past the grace -----------------------------------------------------------


def test_a_call_outliving_the_grace_is_killed_and_run_again_by_the_next_start(
        bwrap_available: None, tmp_path: Path, data_dir: Path, database_url: str) -> None:
    """SIGTERM with a call that outlives the grace: killed at the grace, put back in the
    queue (default policy: 3 attempts), run to the end by the next start (attempts 2)."""
    env = server_env(database_url, FAAS_SHUTDOWN_GRACE_S="1")
    with running_server(tmp_path, env, data_dir) as first, first.client() as c:
        deploy(c, "slow", UNTIL, timeout_s=120)
        end = int(time.time()) + 12
        invocation_id = submit(c, "slow", f"{end} outlived\n")
        wait_until_busy(first, c, running=1, queued=0)
        request_id = records(c)[invocation_id]["request_id"]
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(WAIT_S) == 0, first.log()[-4000:]
    assert int(time.time()) < end, "the call ended by itself before the grace ran out"
    assert busy_cgroups_of(first.proc.pid) == []

    row = read_store(database_url, data_dir, [invocation_id])[invocation_id]
    assert (row.status, row.attempts, row.owner) == ("queued", 1, None), row
    assert runs(first)[request_id] == 1  # the killed run

    with running_server(tmp_path, env, data_dir) as second, second.client() as c:
        final = wait_all_final(c, [invocation_id])[invocation_id]
        assert_nothing_left_by(second.proc.pid, settle_s=30)
    assert (final["status"], final["attempts"], final["stdout"]) == (
        "succeeded", 2, "outlived\n"), final
    assert runs(second)[request_id] == 1


# -- 4. two servers, one PostgreSQL --------------------------------------------------------


def test_two_servers_sharing_a_database_run_each_call_once(
        bwrap_available: None, tmp_path: Path, pg: PgCluster) -> None:
    """100 calls accepted by two servers on one PostgreSQL: each runs exactly once over
    both (claims skip rows the other holds), and both take part."""
    with fresh_database(pg) as url, open_data_dir() as dir_a, open_data_dir() as dir_b:
        env = server_env(url, FAAS_MAX_CONCURRENCY="2")
        with (running_server(tmp_path, env, dir_a) as a,
              running_server(tmp_path, {**env, "FAAS_SANDBOX_UID_BASE": "201000"}, dir_b) as b,
              a.client() as ca, b.client() as cb):
            deploy(ca, "quick", ["sh", "-c", "sleep 0.1; cat"])
            calls = {}
            for i in range(100):
                marker = f"shared-{i}-{uuid.uuid4().hex}"
                calls[submit(ca if i % 2 else cb, "quick", marker)] = marker
            final = wait_all_final(ca, list(calls))
            assert_nothing_left_by(a.proc.pid, settle_s=30)
            assert_nothing_left_by(b.proc.pid, settle_s=30)
    rid = {i: r["request_id"] for i, r in final.items()}
    for invocation_id, marker in calls.items():
        record = final[invocation_id]
        assert (record["status"], record["attempts"], record["stdout"]) == (
            "succeeded", 1, marker), record
    both, on_a, on_b = runs(a, b), runs(a), runs(b)
    assert {i: both[rid[i]] for i in calls if both[rid[i]] != 1} == {}
    assert sum(on_a[rid[i]] for i in calls) > 0 and sum(on_b[rid[i]] for i in calls) > 0
