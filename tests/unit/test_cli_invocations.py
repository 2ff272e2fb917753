"""faas invoke --async and faas invocations, and the client methods under them (cli_fake_api)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_fake_api import URL, FakeApi, b64, install_fake_api

import faas.cli.invocations
from faas.cli import main
from faas.client import FaasClient
from faas.client.api import REQUEST_TIMEOUT_S
from faas.errors import ApiError, ServerUnreachable


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeApi:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", None)
    monkeypatch.setattr(faas.cli.invocations, "MIN_POLL_S", 0.01)
    return install_fake_api(monkeypatch)


def _waits(api: FakeApi) -> list[str]:
    return [dict(s.params).get("wait", "") for s in api.seen]


# -- the client -------------------------------------------------------------------------


def test_the_client_sends_what_each_call_needs(api: FakeApi) -> None:
    with FaasClient(URL, transport=api.transport()) as client:
        accepted = client.invoke_async("hello", {"payload": ""}, version=3,
                                       callback_url="https://cb.example/x",
                                       idempotency_key="k-1")
        seen = api.last
        assert (seen.method, seen.path, seen.params) == ("POST", "/functions/hello/invoke",
                                                         [("version", "3")])
        assert seen.headers["prefer"] == "respond-async"
        assert seen.headers["x-callback-url"] == "https://cb.example/x"
        assert seen.headers["idempotency-key"] == "k-1"
        assert seen.json == {"payload": ""}
        record_id = accepted["invocation_id"]
        assert accepted == {"invocation_id": record_id, "status": "queued"}

        client.invoke_async("hello", {})
        assert "x-callback-url" not in api.last.headers
        assert "idempotency-key" not in api.last.headers and api.last.params == []

        assert client.invocation(record_id)["version"] == 3
        assert (api.last.method, api.last.path, api.last.params) == (
            "GET", f"/invocations/{record_id}", [])
        client.invocation(record_id, wait_s=12.5)
        assert api.last.params == [("wait", "12.5")]

        client.invocations(function="hello", status="queued", since="2026-01-01T00:00:00Z",
                           limit=7, cursor="0")
        assert (api.last.path, sorted(api.last.params)) == ("/invocations", [
            ("cursor", "0"), ("function", "hello"), ("limit", "7"),
            ("since", "2026-01-01T00:00:00Z"), ("status", "queued")])
        assert client.invocations()["items"][0]["id"] in api.records
        assert api.last.params == []

        assert client.cancel_invocation(record_id)["status"] == "cancelled"
        assert (api.last.method, api.last.path) == ("DELETE", f"/invocations/{record_id}")


def test_a_long_poll_reads_for_longer_than_it_waits() -> None:
    timeouts: list[dict[str, float]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(200, json={"id": "x", "status": "running"})

    with FaasClient(URL, transport=httpx.MockTransport(answer)) as client:
        client.invocation("x", wait_s=45)
        client.invocation("x")
    assert timeouts[0]["read"] == 45 + REQUEST_TIMEOUT_S
    assert timeouts[1]["read"] == REQUEST_TIMEOUT_S


def test_client_errors_map_as_everywhere_else(api: FakeApi) -> None:
    with FaasClient(URL, transport=api.transport()) as client:
        with pytest.raises(ApiError, match="not found") as caught:
            client.invocation("a/b?c=1")
        assert caught.value.status == 404
        assert api.last.raw_path == b"/invocations/a%2Fb%3Fc%3D1"
        done = api.add_record("succeeded")
        with pytest.raises(ApiError, match="already succeeded") as caught:
            client.cancel_invocation(done)
        assert caught.value.status == 409
        api.canned.append(httpx.Response(200, json={"stdout": "ran it synchronously"}))
        with pytest.raises(ApiError, match="expected 202 Accepted"):
            client.invoke_async("hello", {})

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with FaasClient(URL, transport=httpx.MockTransport(refuse)) as client, \
            pytest.raises(ServerUnreachable, match="no faas server"):
        client.invocations()


# -- faas invoke --async ----------------------------------------------------------------


def test_invoke_async_sends_the_sync_body_and_prints_the_id(
        api: FakeApi, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"in\xff")))
    assert main(["invoke", "hello", "--async", "--version", "2", "--timeout", "7",
                 "--callback-url", "https://cb.example/done", "--idempotency-key", "k1"]) == 0
    record_id = capsys.readouterr().out
    assert record_id == f"{next(iter(api.records))}\n"
    seen = api.last
    assert (seen.path, seen.params) == ("/functions/hello/invoke", [("version", "2")])
    assert seen.json == {"payload": b64(b"in\xff"), "output_encoding": "base64",
                         "timeout_s": 7.0}
    assert seen.headers["prefer"] == "respond-async"
    assert seen.headers["x-callback-url"] == "https://cb.example/done"
    assert seen.headers["idempotency-key"] == "k1"
    # The same key again: the first call's id, and no second record.
    assert main(["invoke", "hello", "--async", "--idempotency-key", "k1"]) == 0
    assert capsys.readouterr().out == record_id and len(api.records) == 1
    assert main(["invoke", "demo", "--async", "--json", "--", "sh", "-c", "cat"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["status"] == "queued" and body["invocation_id"] in api.records
    assert api.last.json["command"] == ["sh", "-c", "cat"]
    assert "x-callback-url" not in api.last.headers


@pytest.mark.parametrize("flag", [["--callback-url", "https://x"],
                                  ["--idempotency-key", "k"]])
def test_async_only_flags_without_async_are_usage_errors(
        api: FakeApi, capsys: pytest.CaptureFixture[str], flag: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["invoke", "hello", *flag])
    assert caught.value.code == 2
    assert f"faas invoke: error: {flag[0]} needs --async" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["invoke", "demo", *flag, "--", "true"])
    assert api.seen == []


def test_invoke_async_refused_is_125(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.canned.append(httpx.Response(429, json={"error": "the async queue is full"}))
    assert main(["invoke", "hello", "--async"]) == 125
    assert capsys.readouterr().err == "faas invoke: the async queue is full\n"


# -- faas invocations ls ----------------------------------------------------------------


def test_ls_all_follows_three_pages(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    ids = [api.add_record("succeeded", duration_ms=12.5, function_id=f"f{i}")
           for i in range(5)]
    api.add_record("queued", function_id="other", version=None)
    assert main(["invocations", "ls", "--all", "--limit", "2", "--function", "f1"]) == 0
    assert [s.params for s in api.seen] == [[("function", "f1"), ("limit", "2")]]
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == [ids[1], "f1"]
    api.seen.clear()
    assert main(["invocations", "ls", "--all", "--limit", "2", "--status", "succeeded"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "FUNCTION", "VERSION", "STATUS", "ACCEPTED",
                                "DURATION_MS"]
    assert [line.split()[0] for line in lines[1:]] == ids[::-1]  # newest first, 3 pages
    assert lines[1].split()[1:] == ["f4", "1", "succeeded", "2026-11-28T20:00:05Z", "12.5"]
    assert [dict(s.params).get("cursor") for s in api.seen] == [None, "2", "4"]
    assert all(("status", "succeeded") in s.params for s in api.seen)


def test_ls_without_all_shows_one_page_and_json_keeps_the_cursor(
        api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(4):
        api.add_record("queued", version=None)
    assert main(["invocations", "ls", "--limit", "2", "--since", "2026-11-28T20:00:02Z"]) == 0
    out = capsys.readouterr()
    rows = [line.split() for line in out.out.splitlines()[1:]]
    assert [row[2:4] + row[5:] for row in rows] == [["-", "queued", "-"]] * 2
    assert "more: --all" in out.err and len(api.seen) == 1
    assert ("since", "2026-11-28T20:00:02Z") in api.last.params
    assert main(["invocations", "ls", "--json", "--limit", "1"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert len(page["items"]) == 1 and page["next_cursor"] == "1"
    assert main(["invocations", "ls", "--json", "--all", "--limit", "1"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert len(page["items"]) == 4 and page["next_cursor"] is None


def test_ls_all_stops_on_a_repeated_cursor_and_at_the_page_cap(
        api: FakeApi, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    page = {"items": [{"id": "a"}], "next_cursor": "same"}
    api.canned += [httpx.Response(200, json=page)] * 2
    assert main(["invocations", "ls", "--all"]) == 1
    assert "repeated the list cursor 'same'" in capsys.readouterr().err
    for _ in range(5):
        api.add_record()
    monkeypatch.setattr(faas.cli.invocations, "MAX_PAGES", 3)
    api.seen.clear()
    assert main(["invocations", "ls", "--all", "--limit", "1"]) == 1
    assert "stopped after 3 pages" in capsys.readouterr().err and len(api.seen) == 3


# -- faas invocations show / cancel -----------------------------------------------------


def test_show_summarises_the_record_with_its_output(
        api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    record_id = api.add_record("failed", version=None, exit_code=3, error="exited with 3",
                               stdout="out line\n", stderr="boom\n", duration_ms=8.0,
                               start={"kind": "cold", "start_ms": 2.0}, max_attempts=1,
                               attempts=1, truncated={"stdout": True, "stderr": False})
    assert main(["invocations", "show", record_id]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"id: {record_id}\nfunction: hello (ad hoc)\nstatus: failed\n")
    for line in ("exit code: 3", "error: exited with 3", "start: cold, 2.0 ms",
                 "attempts: 1 of 1", "--- stdout (truncated) ---\nout line\n",
                 "--- stderr ---\nboom\n"):
        assert line in text
    assert main(["invocations", "show", record_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == api.records[record_id]
    assert main(["invocations", "show", "nope"]) == 1
    assert capsys.readouterr().err == "faas invocations: invocation 'nope' not found\n"


def test_cancel_prints_the_new_status_and_refuses_a_final_one(
        api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    record_id = api.add_record("running")
    assert main(["invocations", "cancel", record_id]) == 0
    assert capsys.readouterr().out == "cancelled\n"
    assert (api.last.method, api.records[record_id]["status"]) == ("DELETE", "cancelled")
    assert main(["invocations", "cancel", record_id]) == 1
    assert capsys.readouterr().err == "faas invocations: invocation already cancelled\n"


# -- faas invocations wait --------------------------------------------------------------


@pytest.mark.parametrize("final,code,err", [
    ({"status": "succeeded", "exit_code": 0}, 0, b""),
    ({"status": "failed", "exit_code": 3, "error": "exited with status 3"}, 3, b""),
    ({"status": "failed", "exit_code": 137, "signal": 9, "error": "killed by SIGKILL"}, 137,
     b""),
    ({"status": "failed", "exit_code": None, "signal": 15}, 143, b""),
    ({"status": "timed_out", "error": "timed out after 1s"}, 124,
     b"faas invocations: ID timed_out: timed out after 1s\n"),
    ({"status": "error", "error": "the sandbox failed"}, 125,
     b"faas invocations: ID error: the sandbox failed\n"),
    ({"status": "cancelled"}, 125, b"faas invocations: ID cancelled\n"),
])
def test_wait_exits_as_faas_invoke_would(
        api: FakeApi, capfdbinary: pytest.CaptureFixture[bytes], final: dict[str, Any],
        code: int, err: bytes) -> None:
    record_id = api.add_record("queued", finish_after=3, stdout="out \ufffd",
                               stderr="err\n", **final)
    assert main(["invocations", "wait", record_id]) == code
    out = capfdbinary.readouterr()
    assert out.out == "out \ufffd".encode()
    assert out.err == b"err\n" + err.replace(b"ID", record_id.encode())
    assert _waits(api) == ["30", "30", "30"]  # long polls until the third read is final


def test_wait_writes_base64_output_byte_for_byte(
        api: FakeApi, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    record_id = api.add_record("succeeded", exit_code=0, stdout="x",
                               stdout_base64=b64(b"\xfe\x00raw"))
    assert main(["invocations", "wait", record_id, "--timeout", "5"]) == 0
    assert capfdbinary.readouterr().out == b"\xfe\x00raw"
    assert len(api.seen) == 1 and 4 < float(_waits(api)[0]) <= 5


def test_wait_gives_up_after_its_timeout_with_124(
        api: FakeApi, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    record_id = api.add_record("running")
    assert main(["invocations", "wait", record_id, "--timeout", "0"]) == 124
    assert capsys.readouterr().err == (f"faas invocations: {record_id} is still running "
                                       f"after 0 s\n")
    assert _waits(api) == ["0"]
    # A server that answers at once is asked again no sooner than MIN_POLL_S later.
    monkeypatch.setattr(faas.cli.invocations, "MIN_POLL_S", 0.1)
    api.seen.clear()
    assert main(["invocations", "wait", record_id, "--timeout", "0.35"]) == 124
    assert "still running after 0.35 s" in capsys.readouterr().err
    waits = [float(w) for w in _waits(api)]
    assert 2 <= len(waits) <= 5 and waits[0] <= 0.35 and waits[-1] < waits[0]


def test_wait_on_an_unknown_id_is_125(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["invocations", "wait", "nope"]) == 125
    assert capsys.readouterr().err == "faas invocations: invocation 'nope' not found\n"


# -- usage ------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["invocations"], ["invocations", "ls", "--status", "done"],
    ["invocations", "ls", "--limit", "many"], ["invocations", "show"],
    ["invocations", "wait"], ["invocations", "wait", "x", "--timeout", "soon"],
    ["invocations", "cancel"], ["invocations", "rm", "x"]])
def test_invocations_argument_errors_are_usage_errors(api: FakeApi, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert api.seen == []


def test_a_negative_wait_timeout_is_a_usage_error(
        api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["invocations", "wait", "x", "--timeout", "-1"]) == 2
    assert "--timeout: expected seconds >= 0" in capsys.readouterr().err
    assert api.seen == []


@pytest.mark.parametrize("argv", [["invocations"], ["invocations", "ls"],
                                  ["invocations", "show"], ["invocations", "wait"],
                                  ["invocations", "cancel"]])
def test_every_invocations_command_has_help(argv: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: faas invocations") and "``" not in out
