"""The client commands against a server that requires keys: ``FAAS_API_KEY`` or ``--key-file``.

``faas deploy``, ``faas invoke`` and ``faas functions ls`` run as subprocesses
against a real ``faas serve`` whose store holds a developer key (made by
``faas admin create-key``). With the key (from the environment or a file)
they work; without it they fail with the server's 401 message in one line
and their documented exit status (``faas.cli.common``); a key file that
holds no key is a usage error. The key is never on any process's command
line while a command runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Server, create_key, open_data_dir, process_table, running_server

pytestmark = pytest.mark.sandbox

EXIT_SERVER, EXIT_USAGE, EXIT_PLATFORM = 1, 2, 125
SERVE_ENV = {"FAAS_EXECUTORS": "sandbox", "FAAS_DEFAULT_EXECUTOR": "sandbox"}
REFUSED = "missing or invalid API key"


@pytest.fixture(scope="module")
def keyed(bwrap_available: None, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Server, str]]:
    """A server that requires keys, and a developer key of the default tenant."""
    with open_data_dir() as data:
        key = create_key(data, role="developer")
        with running_server(tmp_path_factory.mktemp("cli-keys"), SERVE_ENV,
                            data_dir=data) as srv:
            yield srv, key
        assert srv.proc.returncode == 0, srv.log()[-4000:]
        assert key not in srv.log()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``hello``, made by ``faas new python hello``."""
    folder = tmp_path_factory.mktemp("project")
    made = subprocess.run([sys.executable, "-m", "faas.cli", "new", "python", "hello"],
                          cwd=folder, capture_output=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return folder


def faas(cwd: Path, server: Server, *argv: str, stdin: bytes = b"",
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_")}
    full.update({"FAAS_URL": server.url, **(env or {})})
    return subprocess.run([sys.executable, "-m", "faas.cli", *argv], cwd=cwd, env=full,
                          input=stdin, capture_output=True, timeout=120)


def key_file(folder: Path, text: str) -> str:
    path = folder / "key.txt"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def assert_one_line(done: subprocess.CompletedProcess[bytes], status: int, text: str) -> None:
    stderr = done.stderr.decode()
    assert done.returncode == status, (done.returncode, stderr)
    assert text in stderr and "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_commands_work_with_the_key_from_env_or_file(keyed: tuple[Server, str],
                                                     project: Path, tmp_path: Path) -> None:
    srv, key = keyed
    shutil.copytree(project, tmp_path, dirs_exist_ok=True)
    by_env = {"FAAS_API_KEY": key}
    by_file = ["--key-file", key_file(tmp_path, key + "\n")]

    deployed = faas(tmp_path, srv, "deploy", "hello", env=by_env)
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.startswith(b"deployed hello version 1")
    again = faas(tmp_path, srv, "deploy", "hello", *by_file)
    assert again.stdout.startswith(b"deployed hello version 2"), again.stderr

    for auth in ((), tuple(by_file)):
        ran = faas(tmp_path, srv, "invoke", "hello", *auth, stdin=b'{"name": "Ada"}',
                   env=by_env if not auth else None)
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["message"] == "Hello, Ada!"
        listed = faas(tmp_path, srv, "functions", "ls", *auth,
                      env=by_env if not auth else None)
        assert listed.returncode == 0, listed.stderr
        assert [line.split()[:2] for line in listed.stdout.decode().splitlines()[1:]] == [
            ["hello", "2"]]


@pytest.mark.parametrize("argv, status", [
    (["deploy", "hello"], EXIT_SERVER),
    (["invoke", "hello"], EXIT_PLATFORM),
    (["functions", "ls"], EXIT_SERVER),
], ids=["deploy", "invoke", "ls"])
@pytest.mark.parametrize("key", ["none", "unknown"])
def test_commands_without_a_valid_key_are_refused(keyed: tuple[Server, str], project: Path,
                                                  argv: list[str], status: int,
                                                  key: str) -> None:
    srv, real = keyed
    i = len(real) - 10  # one character of the secret changed: well-formed, unknown
    env = {} if key == "none" else {
        "FAAS_API_KEY": real[:i] + ("B" if real[i] == "A" else "A") + real[i + 1:]}
    done = faas(project, srv, *argv, stdin=b"{}", env=env)
    assert_one_line(done, status, REFUSED)
    assert done.stdout == b""


@pytest.mark.parametrize("content, wanted", [
    ("not a key\n", "does not hold an API key"),
    ("", "does not hold an API key"),
    (None, "cannot read the key file"),
], ids=["garbage", "empty", "missing"])
def test_a_key_file_without_a_key_is_a_usage_error(keyed: tuple[Server, str], tmp_path: Path,
                                                   content: str | None, wanted: str) -> None:
    srv, _ = keyed
    path = key_file(tmp_path, content) if content is not None else str(tmp_path / "nope")
    for argv in (["functions", "ls"], ["invoke", "hello"]):
        done = faas(tmp_path, srv, *argv, "--key-file", path, stdin=b"{}")
        assert_one_line(done, EXIT_USAGE, wanted)


def test_a_malformed_key_in_the_environment_is_a_usage_error(keyed: tuple[Server, str],
                                                             tmp_path: Path) -> None:
    srv, key = keyed
    done = faas(tmp_path, srv, "functions", "ls", env={"FAAS_API_KEY": key + "x"})
    assert done.returncode == EXIT_USAGE, done.stderr
    assert b"FAAS_API_KEY" in done.stderr and b"Traceback" not in done.stderr
    assert key.encode() not in done.stderr


def test_the_key_is_on_no_command_line(keyed: tuple[Server, str], tmp_path: Path) -> None:
    """While ``faas invoke`` (key from the environment) runs a 2 s command on the server,
    no process on the host shows the key in its command line."""
    srv, key = keyed
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_")}
    env.update({"FAAS_URL": srv.url, "FAAS_API_KEY": key})
    proc = subprocess.Popen([sys.executable, "-m", "faas.cli", "invoke", "sleeper", "--",
                             "sh", "-c", "sleep 2; echo done"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    seen_client = seen_sleep = False
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            for info in process_table().values():
                assert key not in info.cmdline, f"the key on a command line: {info}"
                seen_client = seen_client or info.pid == proc.pid
                seen_sleep = seen_sleep or info.cmdline.startswith("sleep 2")
            time.sleep(0.05)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out == b"done\n"
    assert seen_client and seen_sleep, (seen_client, seen_sleep)
