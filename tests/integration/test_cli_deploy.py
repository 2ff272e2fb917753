"""End to end: faas new -> deploy -> invoke -> functions ls/show/rm against a real `faas serve`.

Every step is the installed command line in a subprocess, the way a person
types it; the server runs deployed code on the sandbox tier, which must show
the function's bundle read-only at /function (the handler runs from there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Server, running_server

pytestmark = pytest.mark.sandbox
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def deploy_server(bwrap_available: None,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own (the functions it stores die with it), on the sandbox tier only."""
    tmp = tmp_path_factory.mktemp("cli-deploy")
    env = {"FAAS_EXECUTORS": "sandbox", "FAAS_DEFAULT_EXECUTOR": "sandbox"}
    with running_server(tmp, env) as srv:
        yield srv


def faas(cwd: Path, *argv: str, stdin: bytes = b"", env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_")}
    full.update({"PYTHONPATH": str(REPO / "src"), **(env or {})})
    return subprocess.run([sys.executable, "-m", "faas.cli", *argv], cwd=cwd, env=full,
                          input=stdin, capture_output=True, timeout=120)


def test_new_deploy_invoke_list_show_remove(deploy_server: Server, tmp_path: Path) -> None:
    url = {"FAAS_URL": deploy_server.url}

    made = faas(tmp_path, "new", "python", "hello")
    assert made.returncode == 0, made.stderr

    deployed = faas(tmp_path, "deploy", "hello", env=url)
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.startswith(b"deployed hello version 1 (bundle sha256 ")

    ran = faas(tmp_path, "invoke", "hello", stdin=b'{"name": "Ada"}', env=url)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"message": "Hello, Ada!", "shout": "HELLO, ADA!"}

    refused = faas(tmp_path, "invoke", "hello", stdin=b"{not json", env=url)
    assert refused.returncode == 1  # the handler's own exit status
    assert refused.stdout == b"" and b"the request is not JSON" in refused.stderr

    # No FAAS_URL: the client finds the server where `faas serve` listens.
    listed = faas(tmp_path, "functions", "ls",
                  env={"FAAS_GATEWAY_PORT": str(deploy_server.port)})
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:2] for line in listed.stdout.decode().splitlines()[1:]] == [
        ["hello", "1"]]

    (tmp_path / "hello" / "faas.toml").write_text(
        (tmp_path / "hello" / "faas.toml").read_text().replace("says hello in JSON", "v2"))
    again = faas(tmp_path, "deploy", "hello", "--env", "GREETING=hi", env=url)
    assert again.stdout.startswith(b"deployed hello version 2"), again.stderr

    shown = faas(tmp_path, "functions", "show", "hello", "--json", env=url)
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert (info["latest_version"], info["versions"]) == (2, [1, 2])
    assert info["spec"]["description"] == "v2"
    assert info["spec"]["env_vars"] == {"GREETING": "hi"}
    assert info["bundle"]["sha256"] == json.loads(faas(
        tmp_path, "functions", "show", "hello", "--version", "1", "--json", env=url
    ).stdout)["bundle"]["sha256"]  # only faas.toml changed, and it is not in the bundle

    pinned = faas(tmp_path, "invoke", "hello", "--version", "1", stdin=b"{}", env=url)
    assert pinned.returncode == 0 and b"Hello, world!" in pinned.stdout, pinned.stderr

    labelled = faas(tmp_path, "functions", "ls", "--label", "template=python", "--json",
                    env=url)
    assert [item["id"] for item in json.loads(labelled.stdout)] == ["hello"]
    unlabelled = faas(tmp_path, "functions", "ls", "--label", "template=rust", "--json",
                      env=url)
    assert json.loads(unlabelled.stdout) == []

    removed = faas(tmp_path, "functions", "rm", "hello", env=url)
    assert removed.returncode == 0 and removed.stdout == b"removed hello\n", removed.stderr
    gone = faas(tmp_path, "functions", "show", "hello", env=url)
    assert gone.returncode == 1 and gone.stderr.startswith(b"faas functions: ")
    assert len(gone.stderr.splitlines()) == 1
    assert faas(tmp_path, "functions", "rm", "hello", env=url).returncode == 1


def test_a_timeout_is_124_and_a_refusal_125(deploy_server: Server, tmp_path: Path) -> None:
    url = {"FAAS_URL": deploy_server.url}
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "main.sh").write_text("echo started; sleep 30\n")
    deployed = faas(tmp_path, "deploy", "slow", "--command", "sh /function/main.sh",
                    "--timeout", "1", env=url)
    assert deployed.returncode == 0, deployed.stderr
    timed_out = faas(tmp_path, "invoke", "slow", env=url)
    assert timed_out.returncode == 124, timed_out.stderr
    assert timed_out.stdout == b"started\n" and b"timed out" in timed_out.stderr

    bad = faas(tmp_path, "deploy", "slow", "--command", "sh x", "--memory", "1", env=url)
    assert bad.returncode == 1 and bad.stderr.startswith(b"faas deploy: "), bad.stderr
    refused = faas(tmp_path, "invoke", "slow", "--timeout", "600", env=url)
    assert refused.returncode == 125 and refused.stderr.startswith(b"faas invoke: ")
    assert faas(tmp_path, "functions", "rm", "slow", env=url).returncode == 0
