"""A call's secrets for microVMs: the REQUEST's secret blobs and the agent's read-only
tmpfs of 0400 files (in a mount namespace of its own)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faas.errors import AgentProtocolError
from faas.protocol import AgentRequest, Kind, encode_frame, parse_body
from faas.secrets.names import MAX_SECRET_BYTES, MAX_SECRETS_PER_FUNCTION

SRC = Path(__file__).resolve().parents[2] / "src"
SECRETS = (("db", b"db-value-\x00\xff"), ("api_key", b"key-value"))


def parsed(header: dict[str, object], blobs: list[bytes]) -> AgentRequest:
    frame = parse_body(Kind.REQUEST, encode_frame(Kind.REQUEST, header, blobs)[12:])
    return AgentRequest.from_frame(frame)


def test_a_request_carries_each_secret_as_a_blob_after_stdin_and_the_bundle() -> None:
    request = AgentRequest(["true"], {}, b"in", bundle=("ab" * 32, b"TAR"), secrets=SECRETS)
    frame = parse_body(Kind.REQUEST, request.encode()[12:])
    assert frame.header["secrets"] == ["db", "api_key"]
    assert frame.blobs == [b"in", b"TAR", *(value for _, value in SECRETS)]
    back = AgentRequest.from_frame(frame)
    assert (back.secrets, back.bundle, back.stdin) == (SECRETS, ("ab" * 32, b"TAR"), b"in")
    plain = parse_body(Kind.REQUEST, AgentRequest(["true"], {}, b"in").encode()[12:])
    assert "secrets" not in plain.header and plain.blobs == [b"in"]
    assert AgentRequest.from_frame(plain).secrets == ()


def test_a_requests_repr_never_shows_a_secret() -> None:
    text = repr(AgentRequest(["true"], {}, b"", secrets=SECRETS))
    assert "db-value" not in text and "key-value" not in text


@pytest.mark.parametrize(("names", "blobs", "message"), [
    (["../etc/passwd"], [b"v"], "a secret name is"),
    ([".hidden"], [b"v"], "a secret name is"),
    (["db", "db"], [b"1", b"2"], "twice"),
    ("db", [b"v"], "must be a list"),
    ([f"s{i}" for i in range(MAX_SECRETS_PER_FUNCTION + 1)],
     [b""] * (MAX_SECRETS_PER_FUNCTION + 1), "at most"),
    (["db", "key"], [b"v"], "one per secret"),
    (["db"], [b"x" * (MAX_SECRET_BYTES + 1)], "exceeds"),
])
def test_the_agent_refuses_malformed_secrets(names: object, blobs: list[bytes],
                                              message: str) -> None:
    with pytest.raises(AgentProtocolError, match=message):
        parsed({"command": ["true"], "env": {}, "secrets": names}, [b"", *blobs])


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) for a mount namespace")
def test_install_writes_0400_files_of_the_user_on_a_read_only_tmpfs(tmp_path: Path) -> None:
    script = (
        "import os, sys; from faas.agent.secret_files import install\n"
        "install((('db', b'db-value'), ('api_key', b'k' * 5000)), 65534, 65533, sys.argv[1])\n"
        "for p in (sys.argv[1], sys.argv[1] + '/db', sys.argv[1] + '/api_key'):\n"
        "    s = os.stat(p); print(oct(s.st_mode & 0o777), s.st_uid, s.st_gid)\n"
        "print(open(sys.argv[1] + '/db', 'rb').read().decode())\n"
        "for line in open('/proc/self/mounts'):\n"
        "    if ' ' + sys.argv[1] + ' ' in line: print(line.split()[2], line.split()[3])\n"
        "try:\n    os.chmod(sys.argv[1] + '/db', 0o600)\nexcept OSError as e: print(e.strerror)\n"
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", script,
         str(tmp_path)], capture_output=True, check=False,
        env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[:3] == ["0o500 65534 65533", "0o400 65534 65533", "0o400 65534 65533"], lines
    assert lines[3] == "db-value", lines
    fstype, options = lines[4].split()
    assert fstype == "tmpfs" and {"ro", "nosuid", "nodev", "noexec"} <= set(options.split(","))
    assert lines[5] == "Read-only file system", lines
    assert not list(tmp_path.iterdir())  # it was all in the namespace's tmpfs


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) for a mount namespace")
def test_install_puts_a_read_only_tmpfs_on_an_empty_run_for_the_mount_point(
        tmp_path: Path) -> None:
    """The guest image's /run is empty (mmdebstrap clears it) on a read-only root."""
    (tmp_path / "run").mkdir()
    script = (
        "import os, sys; from faas.agent.secret_files import install\n"
        "install((('db', b'db-value'),), 65534, 65534, sys.argv[1] + '/run/secrets')\n"
        "print(open(sys.argv[1] + '/run/secrets/db').read())\n"
        "for line in open('/proc/self/mounts'):\n"
        "    if ' ' + sys.argv[1] + '/run' in line: print(line.split()[1], line.split()[3])\n"
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", script,
         str(tmp_path)], capture_output=True, check=False,
        env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[0] == "db-value", lines
    mounts = dict(line.split() for line in lines[1:])
    assert set(mounts) == {f"{tmp_path}/run", f"{tmp_path}/run/secrets"}, lines
    assert all(options.startswith("ro,") for options in mounts.values()), lines
    assert not list((tmp_path / "run").iterdir())
