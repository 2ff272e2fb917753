"""Which server a client command talks to: --url > FAAS_URL > FAAS_HOST:FAAS_GATEWAY_PORT."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from faas.cli import main
from faas.client import resolve_url
from faas.config import Settings
from faas.errors import ValidationError
from helpers import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("flag,env,expected", [
    (None, {}, "http://127.0.0.1:8080"),
    (None, {"FAAS_GATEWAY_PORT": "9123"}, "http://127.0.0.1:9123"),
    (None, {"FAAS_HOST": "10.1.2.3", "FAAS_GATEWAY_PORT": "81"}, "http://10.1.2.3:81"),
    (None, {"FAAS_HOST": "0.0.0.0"}, "http://127.0.0.1:8080"),
    (None, {"FAAS_HOST": "::"}, "http://[::1]:8080"),
    (None, {"FAAS_HOST": "fe80::1"}, "http://[fe80::1]:8080"),
    (None, {"FAAS_URL": "https://faas.example/", "FAAS_GATEWAY_PORT": "9"},
     "https://faas.example"),
    ("http://flag:1/", {"FAAS_URL": "http://env:2"}, "http://flag:1"),
    ("", {"FAAS_URL": "http://env:2"}, "http://env:2"),
])
def test_the_url_is_the_flag_else_faas_url_else_where_serve_listens(
        flag: str | None, env: dict[str, str], expected: str) -> None:
    assert resolve_url(flag, Settings.from_env(env)) == expected


@pytest.mark.parametrize("bad", ["localhost:8080", "ftp://x", "http://", "http://h:port"])
def test_a_bad_url_is_refused_naming_where_it_came_from(bad: str) -> None:
    with pytest.raises(ValidationError, match="FAAS_URL"):
        Settings.from_env({"FAAS_URL": bad})
    with pytest.raises(ValidationError, match="--url"):
        resolve_url(bad, Settings.from_env({}))


@pytest.mark.parametrize("argv,status", [(["invoke", "f"], 125), (["functions", "ls"], 1),
                                         (["functions", "rm", "f"], 1)])
def test_nobody_listening_is_one_line_naming_the_url(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        argv: list[str], status: int) -> None:
    port = free_port()  # nothing listens there: connection refused
    monkeypatch.delenv("FAAS_URL", raising=False)
    monkeypatch.setenv("FAAS_GATEWAY_PORT", str(port))
    monkeypatch.setattr(sys, "stdin", None)
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err == (f"faas {argv[0]}: no faas server at http://127.0.0.1:{port} "
                   "(set --url or FAAS_URL)\n")


def test_a_bad_url_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["functions", "ls", "--url", "nope"]) == 2
    assert capsys.readouterr().err.startswith("faas: --url 'nope': must be an http")


def test_from_a_shell_there_is_no_traceback() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "FAAS_URL": f"http://127.0.0.1:"
           f"{free_port()}"}
    proc = subprocess.run([sys.executable, "-m", "faas.cli", "invoke", "f"], env=env,
                          input=b"x", capture_output=True, timeout=60)
    assert proc.returncode == 125
    assert proc.stdout == b"" and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert b"no faas server at" in proc.stderr
