"""Deployed functions through the real app: real bubblewrap sandboxes, a real store on
SQLite and on a private PostgreSQL (every test runs on both)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import tarfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bundle_support import tar_gz
from faas.config import Settings
from faas.errors import StoreUnavailable
from faas.executors.base import Executor
from faas.executors.registry import build_executors
from faas.functions import Functions
from faas.gateway.app import create_app
from faas.metrics import Metrics
from faas.models import ExecutionSpec, InvocationResult
from helpers import metric_value
from pg_cluster import PgCluster, create_database, drop_database

pytestmark = pytest.mark.sandbox
PY = "python3"


class Recording(Executor):
    """The real sandbox executor, keeping every spec it was handed."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.name = inner.name
        self.specs: list[ExecutionSpec] = []

    async def run(self, spec: ExecutionSpec) -> InvocationResult:
        self.specs.append(spec)
        return await self.inner.run(spec)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Api:
    client: httpx.AsyncClient
    functions: Functions
    executor: Recording
    settings: Settings

    async def deploy(self, function_id: str, **spec: Any) -> httpx.Response:
        return await self.client.put(f"/functions/{function_id}", json=spec)

    async def invoke(self, function_id: str, body: Any = None, **params: Any) -> httpx.Response:
        return await self.client.post(f"/functions/{function_id}/invoke", params=params,
                                      json={} if body is None else body)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    cluster: PgCluster = request.getfixturevalue("pg")
    name = f"t_{uuid.uuid4().hex}"
    url = await create_database(cluster, name)
    yield url
    await drop_database(cluster, name)


async def open_api(tmp_path: Path, database_url: str, **overrides: Any) -> Api:
    settings = Settings(executors=("sandbox",), data_dir=tmp_path / "data",
                        database_url=database_url, max_bundle_bytes=64 * 1024,
                        max_bundle_unpacked_bytes=256 * 1024, http_read_timeout_s=5,
                        **overrides)
    usable, _ = await build_executors(settings)
    executor = Recording(usable["sandbox"])
    functions = await Functions.open(settings, Metrics())
    app = create_app(settings, {"sandbox": executor}, functions=functions)
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60)
    return Api(client, functions, executor, settings)


async def close_api(api: Api) -> None:
    await api.client.aclose()
    await api.executor.aclose()
    await api.functions.close()


@pytest.fixture
async def api(bwrap_available: None, tmp_path: Path, database_url: str) -> AsyncIterator[Api]:
    opened = await open_api(tmp_path, database_url)
    yield opened
    await close_api(opened)



def bundle_dirs(api: Api) -> list[Path]:
    root = api.settings.data_dir / "bundles"
    return sorted(root.iterdir()) if root.exists() else []


# -- deploy, read, version, list, delete ---------------------------------------------

async def test_deploy_invoke_and_read_back(api: Api) -> None:
    r = await api.deploy("echo", command=[PY, "-c", "import os,sys; print(os.environ['GREETING'],"
                                                    " sys.stdin.read())"],
                         env_vars={"GREETING": "hello"}, labels={"team": "a"},
                         description="says hello")
    assert r.status_code == 201, r.text
    version = r.json()
    assert version["id"] == "echo" and version["version"] == 1 and version["bundle"] is None
    assert version["created_at"].endswith("Z")
    assert set(version["spec"]) == {"command", "image", "executor", "env_vars", "timeout_s",
                                    "memory_mb", "vcpus", "max_concurrency", "description",
                                    "labels", "content_type", "max_attempts",
                                    "retry_timeouts", "retry_failures"}
    assert version["spec"]["content_type"] == "application/octet-stream"

    r = await api.invoke("echo", {"payload": base64.b64encode(b"world").decode()})
    assert r.status_code == 200, r.text
    assert r.json()["stdout"] == "hello world\n" and r.json()["exit_code"] == 0
    r = await api.invoke("echo", {"env_vars": ["GREETING=bye"]})
    assert r.json()["stdout"] == "bye \n"
    assert (await api.client.post("/functions/echo/invoke")).status_code == 200  # no body

    await asyncio.sleep(0.2)  # counts are written in the background
    r = await api.client.get("/functions/echo")
    assert r.status_code == 200
    detail = r.json()
    assert detail["latest_version"] == 1 and detail["versions"] == [1]
    assert detail["invocations"] == {"ok": 3} and detail["spec"]["labels"] == {"team": "a"}


async def test_versions_are_immutable_and_can_be_pinned(api: Api) -> None:
    for word in ("one", "two"):
        r = await api.deploy("v", command=["echo", word])
        assert r.status_code == 201
    assert r.json()["version"] == 2
    assert (await api.invoke("v")).json()["stdout"] == "two\n"
    assert (await api.invoke("v", version=1)).json()["stdout"] == "one\n"
    r = await api.invoke("v", version=3)
    assert r.status_code == 404 and "no version 3" in r.json()["error"]
    assert (await api.invoke("v", version="x")).status_code == 400
    assert (await api.client.get("/functions/v/versions/1")).json()["spec"]["command"] == [
        "echo", "one"]
    assert (await api.client.get("/functions/v/versions/9")).status_code == 404
    assert (await api.client.get("/functions/v")).json()["versions"] == [1, 2]


async def test_list_by_label_in_pages(api: Api) -> None:
    for i in range(5):
        await api.deploy(f"f{i}", command=["true"], labels={"parity": "even" if i % 2 == 0
                                                            else "odd"})
    r = await api.client.get("/functions", params={"label": "parity=even", "limit": 2})
    page = r.json()
    assert [item["id"] for item in page["items"]] == ["f0", "f2"] and page["next_cursor"]
    r = await api.client.get("/functions", params={"label": "parity=even", "limit": 2,
                                                   "cursor": page["next_cursor"]})
    assert [item["id"] for item in r.json()["items"]] == ["f4"]
    assert r.json()["next_cursor"] is None
    for bad in ({"label": "noequals"}, {"limit": 0}, {"limit": 201}, {"cursor": "garbage!"},
                {"label": [f"k{i}=v" for i in range(17)]}):
        r = await api.client.get("/functions", params=bad)
        assert r.status_code == 400 and isinstance(r.json()["error"], str), (bad, r.text)


async def test_delete_lets_calls_in_flight_finish_and_new_calls_404(api: Api) -> None:
    await api.deploy("slow", command=["sh", "-c", "sleep 1; echo done"])
    call = asyncio.ensure_future(api.invoke("slow"))
    await asyncio.sleep(0.4)
    assert (await api.client.delete("/functions/slow")).status_code == 204
    # At once, not a second later: {} is no ad hoc body, so the id is no longer deployed.
    r = await api.invoke("slow")
    assert r.status_code == 400 and "command" in r.json()["error"], r.text
    r = await call
    assert r.status_code == 200 and r.json()["stdout"] == "done\n"
    assert (await api.client.get("/functions/slow")).status_code == 404
    assert (await api.client.delete("/functions/slow")).status_code == 404
    assert (await api.client.post("/function/slow")).status_code == 404
    # The id is free again: an ad hoc body runs (FAAS_ALLOW_ADHOC defaults to on).
    r = await api.invoke("slow", {"command": ["echo", "adhoc"]})
    assert r.json()["stdout"] == "adhoc\n"


# -- what a caller may and may not change ----------------------------------------------

@pytest.mark.parametrize("body, named", [
    ({"command": ["id"]}, "command"),
    ({"image": "x"}, "image"),
    ({"executor": "sandbox"}, "executor"),
    ({"command": ["id"], "executor": "sandbox"}, "command, executor"),
])
async def test_a_deployed_invoke_may_not_name_what_the_version_fixes(
        api: Api, body: dict[str, Any], named: str) -> None:
    await api.deploy("fixed", command=["true"])
    r = await api.invoke("fixed", body)
    assert r.status_code == 400 and r.json()["error"].startswith(named), r.text
    assert api.executor.specs == []


async def test_limits_may_only_be_lowered(api: Api) -> None:
    await api.deploy("lim", command=["true"], timeout_s=5, memory_mb=128)
    assert (await api.invoke("lim", {"timeout_s": 2, "memory_mb": 64})).status_code == 200
    assert api.executor.specs[-1].limits.memory_bytes == 64 * 1024 * 1024
    r = await api.invoke("lim", {"timeout_s": 6})
    assert r.status_code == 400 and "timeout_s 6 exceeds the function's 5" in r.json()["error"]
    r = await api.invoke("lim", {"memory_mb": 256, "vcpus": 2})
    assert r.status_code == 400 and "memory_mb" in r.json()["error"]
    assert "vcpus" in r.json()["error"]


async def test_adhoc_can_be_turned_off(bwrap_available: None, tmp_path: Path) -> None:
    api = await open_api(tmp_path, "", allow_adhoc=False)
    try:
        r = await api.invoke("nope", {"command": ["true"]})
        assert r.status_code == 404 and r.json()["error"] == "function not deployed"
        await api.deploy("yes", command=["true"])
        assert (await api.invoke("yes")).status_code == 200
    finally:
        await close_api(api)


# -- bundles ------------------------------------------------------------------------

async def test_a_bundle_upload_is_stored_and_handed_to_the_tier(api: Api) -> None:
    archive = tar_gz({"main.py": b"print('from the bundle')\n"})
    r = await api.client.put("/functions/b", files={
        "spec": (None, json.dumps({"command": [PY, "/function/main.py"]}), "application/json"),
        "bundle": ("code.tar.gz", archive, "application/gzip")})
    assert r.status_code == 201, r.text
    bundle = r.json()["bundle"]
    assert bundle["packed_bytes"] == len(archive) and len(bundle["sha256"]) == 64
    stored = api.functions.bundles.path(bundle["sha256"])
    assert (stored / "main.py").read_bytes() == b"print('from the bundle')\n"
    await api.invoke("b")
    handed = api.executor.specs[-1].bundle
    assert handed is not None and handed.path == stored and handed.sha256 == bundle["sha256"]
    assert (await api.client.get("/functions/b")).json()["bundle"] == bundle


async def test_a_bundle_over_the_limit_is_413_and_leaves_nothing(api: Api) -> None:
    r = await api.client.put("/functions/big", files={
        "spec": (None, json.dumps({"command": ["true"]})),
        "bundle": ("b.tar", os.urandom(70 * 1024), "application/x-tar")})
    assert r.status_code == 413, r.text
    assert bundle_dirs(api) == []
    assert (await api.client.get("/functions/big")).status_code == 404


async def test_a_hostile_archive_is_a_400_from_the_bundle_checks(api: Api) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    r = await api.client.put("/functions/evil", files={
        "spec": (None, json.dumps({"command": ["true"]})), "bundle": ("x.tar", out.getvalue())})
    assert r.status_code == 400 and "escape" in r.json()["error"], r.text
    assert "/tmp" not in r.text and str(api.settings.data_dir) not in r.text
    assert bundle_dirs(api) == []


# -- per-function concurrency, counts, metrics ------------------------------------

async def test_max_concurrency_serialises_calls(api: Api) -> None:
    await api.deploy("one", command=["sleep", "0.6"], max_concurrency=1, timeout_s=5)
    started = asyncio.get_running_loop().time()
    answers = await asyncio.gather(api.invoke("one"), api.invoke("one"))
    assert [r.status_code for r in answers] == [200, 200]
    assert asyncio.get_running_loop().time() - started >= 1.2  # one after the other
    assert len(api.functions.gates) == 0  # idle gates are dropped


async def test_a_call_waiting_for_the_functions_slot_times_out_at_its_deadline(
        api: Api) -> None:
    await api.deploy("hog", command=["sleep", "5"], max_concurrency=1, timeout_s=1)
    call = asyncio.ensure_future(api.invoke("hog"))
    await asyncio.sleep(0.2)
    second = await api.invoke("hog", {"timeout_s": 0.5})
    first = await call
    assert first.status_code == 504 and "timed out after 1s" in first.json()["error"]
    assert second.status_code == 504 and "admission" in second.json()["error"], second.text
    assert len(api.executor.specs) == 1


async def test_max_concurrency_refuses_beyond_the_queue(bwrap_available: None,
                                                       tmp_path: Path) -> None:
    api = await open_api(tmp_path, "", max_queue=1)
    try:
        await api.deploy("q", command=["sleep", "0.5"], max_concurrency=1)
        answers = await asyncio.gather(*(api.invoke("q") for _ in range(3)))
        assert sorted(r.status_code for r in answers) == [200, 200, 429]
        assert next(r for r in answers if r.status_code == 429).headers["retry-after"] == "1"
    finally:
        await close_api(api)


async def test_metrics_label_deployed_ids_only(api: Api) -> None:
    await api.deploy("dep", command=["false"])
    await api.invoke("dep")
    for i in range(3):
        await api.invoke(f"random-{i}", {"command": ["true"]})
    await asyncio.sleep(0.2)
    text = (await api.client.get("/metrics")).text
    assert metric_value(text, "faas_function_invocations_total",
                        'function="default/dep",outcome="error"') == 1
    assert metric_value(text, "faas_function_invocations_total",
                        'function="adhoc",outcome="ok"') == 3
    assert "random-" not in text
    assert (await api.client.get("/functions/dep")).json()["invocations"] == {"error": 1}


async def test_a_count_the_store_cannot_write_never_fails_the_call(
        api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    await api.deploy("counted", command=["echo", "ran"])

    async def broken(*args: object) -> None:
        raise StoreUnavailable("the database is gone")

    monkeypatch.setattr(api.functions.store, "count_invocation", broken)
    r = await api.invoke("counted")
    assert r.status_code == 200 and r.json()["stdout"] == "ran\n"
    await asyncio.sleep(0.1)
    assert "could not count an invocation of default/counted v1 (ok)" in caplog.text


# -- the raw route ----------------------------------------------------------------

async def test_the_raw_route_is_stdin_to_stdout(api: Api) -> None:
    script = ("import os,sys; d=sys.stdin.buffer.read(); "
              "print(os.environ['Http_Method'], os.environ['Http_Path'], "
              "os.environ.get('Http_Query'), os.environ.get('Http_Content_Type'), len(d))")
    await api.deploy("raw", command=[PY, "-c", script], content_type="text/plain")
    r = await api.client.post("/function/raw?a=1&b=%20", content=b"\x00\xff" * 10,
                              headers={"content-type": "application/x-thing"})
    assert r.status_code == 200, r.text
    assert r.text == "POST /function/raw a=1&b=%20 application/x-thing 20\n"
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["x-faas-exit-code"] == "0" and float(r.headers["x-faas-duration-ms"]) > 0

    await api.deploy("fail", command=["sh", "-c", "echo out; printf 'bad\\033[31m\\n' >&2; "
                                                  "exit 3"])
    r = await api.client.post("/function/fail")
    assert r.status_code == 500 and r.content == b"out\n"
    assert r.headers["x-faas-exit-code"] == "3" and r.headers["x-faas-error"] == "bad [31m"

    await api.deploy("hang", command=["sleep", "5"], timeout_s=0.5)
    r = await api.client.post("/function/hang")
    assert r.status_code == 504 and "x-faas-error" in r.headers
    assert (await api.client.post("/function/nothere")).status_code == 404


@pytest.mark.parametrize("query, headers", [
    ("q=" + "x" * 5000, {}),
    ("q=%00", {}),  # percent-encoded stays printable: passes (asserted below)
    ("", {"user-agent": "u" * 300}),
])
async def test_the_raw_routes_environment_is_bounded(api: Api, query: str,
                                                     headers: dict[str, str]) -> None:
    await api.deploy("env", command=["sh", "-c", 'printf %s "$Http_Query"'])
    r = await api.client.post(f"/function/env?{query}", headers=headers)
    if query == "q=%00":
        assert r.status_code == 200 and r.text == "q=%00"
    else:
        assert r.status_code == 400 and "printable ASCII of at most" in r.json()["error"]
