"""Deployed functions across a restart of a real ``faas serve`` on the same data folder."""

from __future__ import annotations

import io
import json
import signal
import tarfile
from pathlib import Path

import pytest

from helpers import running_server

pytestmark = pytest.mark.sandbox


def tar_gz(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_functions_outlive_a_restart(bwrap_available: None, tmp_path: Path) -> None:
    env = {"FAAS_EXECUTORS": "sandbox", "FAAS_DATA_DIR": str(tmp_path / "data")}
    archive = tar_gz("hello.txt", b"bundled\n")
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
        assert (tmp_path / "data" / "bundles" / sha / "files" / "hello.txt").read_bytes() \
            == b"bundled\n"
    assert "Traceback" not in server.log()
