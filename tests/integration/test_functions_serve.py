"""Deployed functions across a restart of a real ``faas serve`` on the same data folder."""

from __future__ import annotations

import json
import shutil
import signal
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundle_support import tar_gz
from helpers import running_server
from secrets_e2e import check_a_secret_end_to_end

pytestmark = pytest.mark.sandbox



@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder every host uid may traverse (pytest's own tmp folders are 0700, which
    would hide a bundle from the sandbox uids before the server's rules apply)."""
    folder = Path(tempfile.mkdtemp(prefix="faas-test-data-", dir="/tmp"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_functions_outlive_a_restart(bwrap_available: None, tmp_path: Path,
                                     open_tmp: Path) -> None:
    env = {"FAAS_EXECUTORS": "sandbox", "FAAS_DATA_DIR": str(open_tmp / "data")}
    archive = tar_gz({"hello.txt": b"bundled\n"})
    with running_server(tmp_path, env) as server, server.client() as c:
        r = c.put("/functions/keep", files={
            "spec": (None, json.dumps({"command": ["echo", "v1"], "labels": {"k": "v"}})),
            "bundle": ("code.tar.gz", archive)})
        assert r.status_code == 201, r.text
        sha = r.json()["bundle"]["sha256"]
        assert c.put("/functions/keep", json={"command": ["echo", "v2"],
                                              "labels": {"k": "v"}}).status_code == 201
        assert c.put("/functions/gone", json={"command": ["true"]}).status_code == 201
        assert c.delete("/functions/gone").status_code == 204
        assert c.post("/functions/keep/invoke").json()["stdout"] == "v2\n"
        assert c.post("/function/keep").content == b"v2\n"
        assert server.stop(signal.SIGTERM) == 0
    with running_server(tmp_path, env) as server, server.client() as c:
        detail = c.get("/functions/keep").json()
        assert detail["versions"] == [1, 2] and detail["spec"]["command"] == ["echo", "v2"]
        assert detail["invocations"] == {"ok": 2}
        assert c.get("/functions/keep/versions/1").json()["bundle"]["sha256"] == sha
        assert c.post("/functions/keep/invoke", params={"version": 1}).json()["stdout"] == "v1\n"
        assert c.get("/functions/gone").status_code == 404
        assert [i["id"] for i in c.get("/functions", params={"label": "k=v"}).json()["items"]] \
            == ["keep"]
        assert (open_tmp / "data" / "bundles" / sha / "files" / "hello.txt").read_bytes() \
            == b"bundled\n"
    assert "Traceback" not in server.log()


HANDLER = b"import sys\nsys.stdout.write(sys.stdin.read().upper())\n"


def test_a_python_handler_bundle_answers_and_the_store_stays_private(
        bwrap_available: None, tmp_path: Path, open_tmp: Path) -> None:
    """Deploy code, call it through both routes; the data folder is traversable but not
    listable, and the database file is the server's alone (even when an older server
    left the folder 0700)."""
    data = open_tmp / "data"
    data.mkdir(mode=0o700)
    env = {"FAAS_EXECUTORS": "sandbox", "FAAS_DATA_DIR": str(data)}
    with running_server(tmp_path, env) as server, server.client() as c:
        r = c.put("/functions/upper", files={
            "spec": (None, json.dumps({"command": ["python3", "/function/handler.py"],
                                       "content_type": "text/plain"})),
            "bundle": ("code.tar.gz", tar_gz({"handler.py": HANDLER}))})
        assert r.status_code == 201, r.text
        body = c.post("/functions/upper/invoke",
                      json={"payload": list(b"hello")}).json()
        assert body["stdout"] == "HELLO" and body["exit_code"] == 0, body
        raw = c.post("/function/upper", content=b"raw body")
        assert raw.status_code == 200 and raw.content == b"RAW BODY", raw.text
        assert raw.headers["content-type"].startswith("text/plain")
    assert stat.S_IMODE(data.stat().st_mode) == 0o711
    for name in ("faas.db", "faas.db-wal", "faas.db-shm"):
        if (data / name).exists():
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert "Traceback" not in server.log()


def test_a_secret_reaches_the_sandbox_and_nowhere_else(bwrap_available: None,
                                                        tmp_path: Path, open_tmp: Path) -> None:
    """Set over the API, read as /run/secrets/<name> by a sync and an async call; not in
    answers, records, metrics, the log, host process listings, nor in the store's files
    (only its ciphertext is there) once the server has stopped."""
    data = open_tmp / "data"
    env = {"FAAS_EXECUTORS": "sandbox", "FAAS_DATA_DIR": str(data)}
    with running_server(tmp_path, env) as server:
        value = check_a_secret_end_to_end(server.url, server.log_path, "sandbox")
    files = [path for path in data.rglob("*") if path.is_file()]
    assert any(path.name == "faas.db" for path in files)
    for path in files:
        assert value.encode() not in path.read_bytes(), path.name
