"""faas new / deploy / invoke / functions against a narrow fake of the API (cli_fake_api)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest
from cli_fake_api import FakeApi, b64, install_fake_api

from faas.cli import main
from faas.client import FaasClient
from faas.errors import ServerUnreachable


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeApi:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", None)
    return install_fake_api(monkeypatch)


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


# -- faas new ---------------------------------------------------------------------------


def test_the_scaffolded_handler_really_runs(api: FakeApi, tmp_path: Path) -> None:
    assert main(["new", "python", "hello"]) == 0
    handler = tmp_path / "hello" / "handler.py"
    ok = subprocess.run([sys.executable, str(handler)], input=b'{"name": "Ada"}',
                        capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"message": "Hello, Ada!", "shout": "HELLO, ADA!"}
    empty = subprocess.run([sys.executable, str(handler)], input=b"", capture_output=True,
                           timeout=30)
    assert json.loads(empty.stdout)["message"] == "Hello, world!"
    bad = subprocess.run([sys.executable, str(handler)], input=b"{", capture_output=True,
                         timeout=30)
    assert bad.returncode == 1 and b"not JSON" in bad.stderr and bad.stdout == b""


def test_new_refuses_an_existing_folder_and_a_bad_name(
        api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").mkdir()
    assert main(["new", "python", "taken"]) == 2
    assert "taken already exists" in capsys.readouterr().err
    assert main(["new", "python", "../up"]) == 2
    assert "a function id is" in capsys.readouterr().err
    assert not (tmp_path.parent / "up").exists()
    with pytest.raises(SystemExit) as caught:
        main(["new", "cobol", "x"])
    assert caught.value.code == 2


# -- faas deploy ------------------------------------------------------------------------


def test_deploy_sends_the_toml_spec_and_the_bundle(
        api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "python", "hello"]) == 0
    capsys.readouterr()
    assert main(["deploy", "hello"]) == 0
    assert capsys.readouterr().out.startswith("deployed hello version 1 (bundle sha256 ")
    seen = api.last
    assert (seen.method, seen.path) == ("PUT", "/functions/hello")
    assert seen.json == {"command": ["python3", "/function/handler.py"],
                         "description": "says hello in JSON", "content_type": "application/json",
                         "timeout_s": 10, "memory_mb": 128, "labels": {"template": "python"}}
    with tarfile.open(fileobj=io.BytesIO(seen.parts["bundle"]), mode="r:gz") as tar:
        assert tar.getnames() == ["handler.py"]  # faas.toml travels as the spec
    assert main(["deploy", "hello", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 2


def test_flags_override_the_toml(api: FakeApi) -> None:
    assert main(["new", "python", "hello"]) == 0
    assert main(["deploy", "hello", "--name", "other", "--command", "python3 -u 'a b.py'",
                 "--timeout", "5", "--memory", "64", "--label", "team=web", "--env", "K=V=W",
                 "--executor", "docker", "--image", "python:3.12", "--no-bundle"]) == 0
    seen = api.last
    assert seen.path == "/functions/other" and seen.parts == {}
    assert seen.json["command"] == ["python3", "-u", "a b.py"]
    assert (seen.json["timeout_s"], seen.json["memory_mb"]) == (5.0, 64)
    assert seen.json["labels"] == {"template": "python", "team": "web"}
    assert seen.json["env_vars"] == {"K": "V=W"}
    assert (seen.json["executor"], seen.json["image"]) == ("docker", "python:3.12")


def test_deploy_without_toml_names_the_function_after_its_folder(
        api: FakeApi, tmp_path: Path) -> None:
    code = tmp_path / "my-fn"
    code.mkdir()
    (code / "main.sh").write_text("cat\n")
    assert main(["deploy", str(code), "--command", "sh /function/main.sh"]) == 0
    assert api.last.path == "/functions/my-fn"


@pytest.mark.parametrize("argv,message", [
    (["deploy", "."], "no command: set command in faas.toml or pass --command"),
    (["deploy", "missing", "--command", "x"], "missing: not a folder"),
    (["deploy", ".", "--command", "x", "--label", "nolabel"], "--label 'nolabel': expected"),
    (["deploy", ".", "--command", "'unclosed"], "--command: No closing quotation"),
])
def test_deploy_usage_errors(api: FakeApi, capsys: pytest.CaptureFixture[str],
                             argv: list[str], message: str) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert api.seen == []


def test_deploy_prints_every_problem_the_server_names(
        api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.canned.append(httpx.Response(400, json={
        "error": "invalid function spec", "problems": ["memory_mb: too large", "vcpus: bad"]}))
    assert main(["deploy", ".", "--command", "true", "--no-bundle"]) == 1
    assert capsys.readouterr().err == ("faas deploy: invalid function spec\n"
                                       "  memory_mb: too large\n  vcpus: bad\n")


# -- faas invoke ------------------------------------------------------------------------


def test_invoke_pipes_stdin_and_writes_output_raw(
        api: FakeApi, monkeypatch: pytest.MonkeyPatch,
        capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    _stdin(monkeypatch, b"in\xff")
    api.result = {"stdout": "x", "stdout_base64": b64(b"out\xfe"), "stderr": "",
                  "stderr_base64": b64(b"err"), "exit_code": 3,
                  "error": "exited with status 3", "timed_out": False}
    assert main(["invoke", "hello", "--version", "2", "--env", "A=1", "--timeout", "7",
                 "--memory", "64"]) == 3
    out = capfdbinary.readouterr()
    assert (out.out, out.err) == (b"out\xfe", b"err")  # its non-zero exit speaks for itself
    seen = api.last
    assert (seen.method, seen.path, seen.params) == ("POST", "/functions/hello/invoke",
                                                     [("version", "2")])
    assert seen.json == {"payload": b64(b"in\xff"), "output_encoding": "base64",
                         "env_vars": ["A=1"], "timeout_s": 7.0, "memory_mb": 64}


def test_a_timeout_is_124_with_the_partial_output(
        api: FakeApi, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    api.result_status = 504
    api.result = {"stdout": "part", "stdout_base64": b64(b"part"), "stderr_base64": "",
                  "exit_code": None, "timed_out": True,
                  "error": "timed out after 1s; the sandbox was killed"}
    assert main(["invoke", "slow"]) == 124
    out = capfdbinary.readouterr()
    assert out.out == b"part"
    assert out.err == b"faas invoke: timed out after 1s; the sandbox was killed\n"


@pytest.mark.parametrize("status,body,line", [
    (404, {"error": "function not deployed"}, "faas invoke: function not deployed\n"),
    (429, {"error": "too many invocations"}, "faas invoke: too many invocations\n"),
    (502, "<html>bad gateway</html>", "faas invoke: HTTP 502: <html>bad gateway</html>\n"),
    (200, "not json", "faas invoke: HTTP 200: not json\n"),
])
def test_a_platform_error_is_125_with_the_servers_error(
        api: FakeApi, capsys: pytest.CaptureFixture[str], status: int, body: object,
        line: str) -> None:
    api.canned.append(httpx.Response(status, json=body) if isinstance(body, dict)
                      else httpx.Response(status, text=str(body)))
    assert main(["invoke", "hello"]) == 125
    assert capsys.readouterr().err == line


def test_a_command_that_never_ran_is_125(api: FakeApi,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    api.result = {"stdout": "", "stderr": "", "exit_code": None, "timed_out": False,
                  "error": "the process did not report an exit status"}
    assert main(["invoke", "hello"]) == 125
    assert "did not report" in capsys.readouterr().err


def test_the_ad_hoc_form_still_sends_its_command(
        api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").write_bytes(b"\x00\x01")
    assert main(["invoke", "demo", "--payload-file", "in", "--executor", "docker", "--",
                 "sh", "-c", "cat"]) == 0
    assert api.last.json == {"payload": b64(b"\x00\x01"), "output_encoding": "base64",
                             "command": ["sh", "-c", "cat"], "image": "",
                             "executor": "docker"}
    assert main(["invoke", "demo", "--version", "1", "--", "true"]) == 2
    assert "--version is for deployed functions" in capsys.readouterr().err
    assert main(["invoke", "demo", "--image", "x"]) == 2
    assert main(["invoke", "demo", "--payload-file", "nope"]) == 2
    assert "--payload-file: No such file" in capsys.readouterr().err


def test_invoke_json_prints_the_whole_result(
        api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.result = {"stdout": "hi", "exit_code": 0, "error": None, "timed_out": False}
    assert main(["invoke", "hello", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == api.result


def test_invoke_argument_errors_are_usage_errors(api: FakeApi) -> None:
    for argv in (["invoke"], ["invoke", "f", "--timeout", "soon"], ["invoke", "f", "--nope"]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2


# -- faas functions ---------------------------------------------------------------------


def test_ls_follows_every_page_and_passes_labels(
        api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("c", "a", "b"):
        assert main(["deploy", ".", "--name", name, "--command", "true", "--no-bundle",
                     "--description", f"fn {name}"]) == 0
    capsys.readouterr()
    assert main(["functions", "ls", "--label", "team=web", "--label", "tier=1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "UPDATED", "DESCRIPTION"]
    assert [line.split()[0] for line in lines[1:]] == ["a", "b", "c"]  # two pages
    assert lines[1].split()[-2:] == ["fn", "a"]
    first, second = api.seen[-2:]
    assert ("label", "team=web") in first.params and ("label", "tier=1") in first.params
    assert ("cursor", "2") in second.params
    assert main(["functions", "ls", "--json"]) == 0
    assert [i["id"] for i in json.loads(capsys.readouterr().out)] == ["a", "b", "c"]


def test_show_and_rm(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", ".", "--name", "f", "--command", "python3 x.py", "--label",
                 "k=v", "--no-bundle"]) == 0
    assert main(["deploy", ".", "--name", "f", "--command", "python3 y.py"]) == 0
    capsys.readouterr()
    assert main(["functions", "show", "f"]) == 0
    text = capsys.readouterr().out
    assert "name: f\nversion: 2 (of 2)\n" in text and "command: python3 y.py" in text
    assert "bundle: sha256 abab" in text and "invocations: ok 2" in text
    assert main(["functions", "show", "f", "--version", "1"]) == 0
    text = capsys.readouterr().out
    assert "version: 1\n" in text and 'labels: {"k": "v"}' in text and "bundle: none" in text
    assert main(["functions", "show", "f", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["versions"] == [1, 2]
    assert main(["functions", "rm", "f"]) == 0
    assert capsys.readouterr().out == "removed f\n"
    assert api.last.method == "DELETE"
    assert main(["functions", "show", "f"]) == 1
    assert capsys.readouterr().err == "faas functions: function 'f' not found\n"
    assert main(["functions", "rm", "f"]) == 1


def test_names_are_one_path_segment(api: FakeApi) -> None:
    assert main(["functions", "show", "a/../b?x=1"]) == 1
    assert api.last.raw_path == b"/functions/a%2F..%2Fb%3Fx%3D1"


def test_a_server_that_repeats_its_cursor_ends_the_listing(
        api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    page = {"items": [{"id": "a", "latest_version": 1}], "next_cursor": "same"}
    api.canned += [httpx.Response(200, json=page), httpx.Response(200, json=page)]
    assert main(["functions", "ls"]) == 1
    assert "repeated the list cursor 'same'" in capsys.readouterr().err


def test_a_server_that_never_answers_is_one_line() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with FaasClient("http://faas.test", transport=httpx.MockTransport(hang)) as client, \
            pytest.raises(ServerUnreachable, match="did not answer in time"):
        client.get_function("f")


@pytest.mark.parametrize("argv", [[], ["deploy"], ["invoke"], ["new"], ["functions"],
                                  ["functions", "ls"], ["functions", "show"],
                                  ["functions", "rm"], ["serve"], ["doctor"]])
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: faas") and "``" not in out
