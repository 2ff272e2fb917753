"""Through real HTTP into real bubblewrap sandboxes."""

import base64
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from helpers import (
    Server,
    assert_no_leaks,
    assert_nothing_left_by,
    cgroup_dirs,
    metric_value,
    running_server,
    sandbox_processes,
)

pytestmark = pytest.mark.sandbox
PY = "python3"


def test_the_readme_example(server: Server, no_leaks: None) -> None:
    r = server.invoke([PY, "-c", "import sys; print(sys.stdin.read())"], payload=[104, 105],
                      image="any")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stdout"] == "hi\n" and body["error"] is None and body["exit_code"] == 0
    assert body["executor"] == "sandbox" and body["duration_ms"] > 0


def test_binary_payload_round_trips_byte_for_byte(server: Server, no_leaks: None) -> None:
    data = bytes(range(256)) * 64 + os.urandom(4096)
    r = server.invoke(["cat"], payload=base64.b64encode(data).decode(), output_encoding="base64")
    assert r.status_code == 200
    assert base64.b64decode(r.json()["stdout_base64"]) == data


def test_largest_payload_passes_and_one_byte_more_is_413(server: Server) -> None:
    limit = 6 * 1024 * 1024
    data = os.urandom(limit)
    r = server.invoke(["sha256sum"], payload=base64.b64encode(data).decode())
    assert r.status_code == 200
    assert r.json()["stdout"].split()[0] == hashlib.sha256(data).hexdigest()
    r = server.invoke(["cat"], payload=base64.b64encode(data + b"x").decode())
    assert r.status_code == 413 and "payload" in r.json()["error"]
    with server.client() as c:
        r = c.post("/functions/t/invoke", content=b"{" + b" " * (30 * 1024 * 1024) + b"}")
    assert r.status_code == 413


def test_invalid_utf8_output(server: Server) -> None:
    code = "import sys; sys.stdout.buffer.write(b'a\\xff\\xfeb')"
    r = server.invoke([PY, "-c", code], output_encoding="base64")
    body = r.json()
    assert body["stdout"] == "a\ufffd\ufffdb"
    assert base64.b64decode(body["stdout_base64"]) == b"a\xff\xfeb"


def test_env_is_exactly_the_request_plus_a_minimal_base(server: Server) -> None:
    r = server.invoke(["env"], env_vars=["GREETING=hello world", "X=1=2"])
    env = dict(line.split("=", 1) for line in r.json()["stdout"].splitlines())
    assert env["GREETING"] == "hello world" and env["X"] == "1=2"
    assert set(env) <= {"GREETING", "X", "PATH", "HOME", "LANG", "USER", "PWD"}
    assert "FAAS_TEST_SECRET" not in r.text


def test_nonzero_exit_and_stderr(server: Server) -> None:
    r = server.invoke(["sh", "-c", "echo out; echo err >&2; exit 3"])
    body = r.json()
    assert r.status_code == 200
    assert (body["stdout"], body["stderr"], body["exit_code"]) == ("out\n", "err\n", 3)
    assert body["error"] == "exited with status 3"


def test_command_not_found(server: Server) -> None:
    r = server.invoke(["definitely-not-a-command"])
    body = r.json()
    assert r.status_code == 200
    assert body["exit_code"] == 127
    assert body["error"] == "command not found: definitely-not-a-command"


def test_killed_by_signal_is_reported(server: Server) -> None:
    body = server.invoke(["sh", "-c", "kill -SEGV $$"]).json()
    assert body["signal"] == signal.SIGSEGV and body["exit_code"] == 128 + signal.SIGSEGV
    assert "SIGSEGV" in body["error"]


def test_timeout_is_504_with_partial_output(server: Server, no_leaks: None) -> None:
    r = server.invoke(["sh", "-c", "echo before; sleep 30"], timeout_s=1)
    assert r.status_code == 504
    body = r.json()
    assert body["stdout"] == "before\n" and body["timed_out"] and "timed out" in body["error"]
    assert_nothing_left_by(server.proc.pid)


def test_output_cap_flags_truncation(server: Server) -> None:
    r = server.invoke(["sh", "-c", "head -c 3000000 /dev/zero; echo tail >&2"])
    body = r.json()
    assert body["truncated"] == {"stdout": True, "stderr": False}
    assert len(body["stdout"]) == 1024 * 1024 and body["stderr"] == "tail\n"


def test_request_id_in_response_and_logs(server: Server) -> None:
    with server.client() as c:
        r = c.post("/functions/logged/invoke", json={"command": ["true"]},
                   headers={"X-Request-Id": "trace-me-42"})
    assert r.headers["x-request-id"] == "trace-me-42" == r.json()["request_id"]
    time.sleep(0.1)
    assert any('"request_id": "trace-me-42"' in line for line in server.log().splitlines())


def test_metrics_count_outcomes(server: Server) -> None:
    # The server is shared: count this call's increments, not whatever earlier tests left.
    name, labels = "faas_invocations_total", 'executor="sandbox",outcome="error"'
    with server.client() as c:
        before = metric_value(c.get("/metrics").text, name, labels)
        assert server.invoke(["false"], function_id="metered").status_code == 200
        text = c.get("/metrics").text
    assert metric_value(text, name, labels) == before + 1
    assert "metered" not in text  # client-chosen ids are never metric labels


def test_client_disconnect_kills_the_sandbox(server: Server) -> None:
    with pytest.raises(httpx.ReadTimeout), server.client(timeout=1.0) as c:
        c.post("/functions/gone/invoke", json={"command": ["sleep", "60"]})
    assert_nothing_left_by(server.proc.pid, settle_s=5)
    assert_no_leaks(settle_s=5)


def test_faas_invoke_cli(server: Server) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "faas.cli", "invoke", "--url", server.url, "cli", "--",
         "sh", "-c", "cat; exit 5"], input=b"from stdin\xff", capture_output=True, timeout=60)
    assert proc.stdout == b"from stdin\xff"
    assert proc.returncode == 5


def test_concurrency_beyond_admission_gives_429s(tmp_path: Path, bwrap_available: None) -> None:
    env = {"FAAS_MAX_CONCURRENCY": "2", "FAAS_MAX_QUEUE": "2"}
    with running_server(tmp_path, env) as srv:
        results: list[int] = []

        def call() -> None:
            results.append(srv.invoke(["sleep", "1"]).status_code)

        threads = [threading.Thread(target=call) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count(200) >= 4 and results.count(429) >= 1
        assert set(results) <= {200, 429}
        assert srv.invoke(["true"]).status_code == 200
    assert srv.proc.returncode == 0
    assert_no_leaks()


def test_sigterm_lets_in_flight_finish(tmp_path: Path, bwrap_available: None) -> None:
    with running_server(tmp_path, {"FAAS_SHUTDOWN_GRACE_S": "10"}) as srv:
        box: dict[str, httpx.Response] = {}
        t = threading.Thread(target=lambda: box.setdefault(
            "r", srv.invoke(["sh", "-c", "sleep 1; echo finished"])))
        t.start()
        time.sleep(0.4)
        srv.proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert box["r"].status_code == 200 and box["r"].json()["stdout"] == "finished\n"
        assert srv.proc.wait(30) == 0
    assert_no_leaks()
    assert not [g for g in cgroup_dirs() if g.name.startswith(f"g{srv.proc.pid}x")]


def test_sigterm_kills_what_outlives_the_grace(tmp_path: Path, bwrap_available: None) -> None:
    with running_server(tmp_path, {"FAAS_SHUTDOWN_GRACE_S": "1"}) as srv:
        box: dict[str, object] = {}

        def call() -> None:
            try:
                box["r"] = srv.invoke(["sleep", "120"], timeout=60)
            except httpx.HTTPError as exc:
                box["r"] = exc

        t = threading.Thread(target=call)
        t.start()
        time.sleep(0.5)
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(30) == 0
        assert time.monotonic() - started < 20
        t.join(30)
    outcome = box["r"]
    # Killed at the end of the grace: a 503 saying so, or the connection closed by the
    # server without an answer. Not any HTTPError: a refused connect or a client timeout
    # would mean the call never ran or the server never let go of it.
    if isinstance(outcome, httpx.Response):
        assert outcome.status_code == 503, outcome.text
        assert "shut down" in outcome.json()["error"], outcome.text
    else:
        assert isinstance(outcome, httpx.RemoteProtocolError), repr(outcome)
    assert_no_leaks()
    assert not sandbox_processes()
    assert not [g for g in cgroup_dirs() if g.name.startswith(f"g{srv.proc.pid}x")]
