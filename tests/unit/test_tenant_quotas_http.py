"""Tenants' quotas through the real app: a real SQLite store, real API keys (``Authorization:
Bearer``), a fake executor. Each quota refuses one tenant while another, at the same
moment, is served."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bundle_support import tar_gz
from faas.config import Settings
from faas.executors.fake import FakeExecutor
from faas.functions import Functions
from faas.gateway.app import create_app
from faas.metrics import Metrics
from faas.models import ExecutionSpec, InvocationResult
from faas.store.invocation_records import now_us
from faas.store.tenant_records import KeyInfo
from faas.tenancy.keys import new_key

ASYNC = {"Prefer": "respond-async"}


@dataclass
class World:
    functions: Functions
    executor: FakeExecutor
    #: tenant -> a client sending that tenant's developer key
    clients: dict[str, httpx.AsyncClient]
    #: calls of tenants in here block until it is set
    hold: dict[str, asyncio.Event]

    def __getitem__(self, tenant: str) -> httpx.AsyncClient:
        return self.clients[tenant]


@contextlib.asynccontextmanager
async def world(tmp_path: Path, quotas: Mapping[str, dict[str, Any]],
                **settings: Any) -> AsyncIterator[World]:
    config = Settings(executors=("sandbox",), default_executor="sandbox",
                      data_dir=tmp_path / "data", **settings)
    hold: dict[str, asyncio.Event] = {}

    async def run(spec: ExecutionSpec) -> InvocationResult:
        event = hold.get(spec.function_id.partition("/")[0])
        if event is not None:
            await event.wait()
        return InvocationResult(exit_code=0, stdout=b"ok")

    executor = FakeExecutor(run, name="sandbox")
    functions = await Functions.open(config, Metrics())
    clients: dict[str, httpx.AsyncClient] = {}
    try:
        keys = {}
        for tenant in ("a", "b"):
            await functions.store.tenants.create_tenant(tenant, quotas.get(tenant, {}))
            key = keys[tenant] = new_key()
            await functions.store.tenants.create_key(KeyInfo(
                key.key_id, tenant, "developer", "test", key.key_hash, now_us()))
        app = create_app(config, {"sandbox": executor}, functions=functions)
        async with app.router.lifespan_context(app):
            for tenant, key in keys.items():
                clients[tenant] = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://t",
                    headers={"authorization": f"Bearer {key.key}"})
            yield World(functions, executor, clients, hold)
    finally:
        for event in hold.values():
            event.set()
        for client in clients.values():
            await client.aclose()
        await functions.close()


async def invoke(client: httpx.AsyncClient, body: Any = None, function_id: str = "fn",
                 headers: Mapping[str, str] | None = None) -> httpx.Response:
    return await client.post(f"/functions/{function_id}/invoke",
                             json={"command": ["true"]} if body is None else body,
                             headers=dict(headers or {}))


async def running(world: World, count: int) -> None:
    async with asyncio.timeout(10):
        while world.executor.running < count:
            await asyncio.sleep(0.01)


async def test_over_its_rate_a_tenant_gets_429_while_another_gets_200(tmp_path: Path) -> None:
    async with world(tmp_path, {"a": {"rate_per_s": 0.2, "burst": 2}}) as w:
        # Deployed (a deploy takes no token), so that a raw call would run if let in.
        r = await w["a"].put("/functions/fn", json={"command": ["true"]})
        assert r.status_code == 201, r.text
        assert [(await invoke(w["a"], {})).status_code for _ in range(2)] == [200, 200]
        over = await invoke(w["a"], {})
        assert over.status_code == 429, over.text
        assert "rate quota" in over.json()["error"]
        assert over.headers["retry-after"] == "5"  # one token every 5 s
        assert (await invoke(w["b"])).status_code == 200  # the same moment, b is served
        # An async call spends the same tokens, and raw calls too.
        assert (await invoke(w["a"], {}, headers=ASYNC)).status_code == 429
        assert (await w["a"].post("/function/fn", content=b"x")).status_code == 429


async def test_a_tenants_concurrency_quota_holds_while_its_calls_run(tmp_path: Path) -> None:
    async with world(tmp_path, {"a": {"max_concurrency": 2}}, max_concurrency=8) as w:
        w.hold["a"] = asyncio.Event()
        first = [asyncio.ensure_future(invoke(w["a"])) for _ in range(2)]
        await running(w, 2)
        over = await invoke(w["a"])
        assert over.status_code == 429 and over.headers["retry-after"] == "1"
        assert "concurrency quota" in over.json()["error"]
        assert (await invoke(w["b"])).status_code == 200
        w.hold["a"].set()
        assert [(await call).status_code for call in first] == [200, 200]
        assert (await invoke(w["a"])).status_code == 200  # the slots were given back


async def test_per_call_limits_over_the_tenants_maxima_are_400(tmp_path: Path) -> None:
    quotas = {"a": {"max_memory_mb": 128, "max_timeout_s": 2}}
    async with world(tmp_path, quotas) as w:
        fits = {"command": ["true"], "memory_mb": 128, "timeout_s": 2}
        assert (await invoke(w["a"], fits)).status_code == 200
        r = await invoke(w["a"], {**fits, "memory_mb": 256})
        assert r.status_code == 400 and "max_memory_mb" in r.json()["error"]
        r = await invoke(w["a"], {**fits, "timeout_s": 3}, headers=ASYNC)
        assert r.status_code == 400 and "max_timeout_s" in r.json()["error"]
        # Checked against the resolved values: the server's default memory (256) is over.
        r = await invoke(w["a"], {"command": ["true"], "timeout_s": 1})
        assert r.status_code == 400 and "max_memory_mb" in r.json()["error"]
        # A deployed function's own limits count as the call's.
        r = await w["a"].put("/functions/slow", json={"command": ["true"], "memory_mb": 64,
                                                     "timeout_s": 10})
        assert r.status_code == 201, r.text
        r = await invoke(w["a"], {}, "slow")
        assert r.status_code == 400 and "max_timeout_s" in r.json()["error"]
        assert (await w["a"].post("/function/slow", content=b"")).status_code == 400
        assert (await invoke(w["b"], {**fits, "memory_mb": 256})).status_code == 200


async def test_the_functions_quota_is_403_and_a_redeploy_still_fits(tmp_path: Path) -> None:
    async with world(tmp_path, {"a": {"max_functions": 2}}) as w:
        for name in ("one", "two", "two"):
            r = await w["a"].put(f"/functions/{name}", json={"command": ["true"]})
            assert r.status_code == 201, r.text
        r = await w["a"].put("/functions/three", json={"command": ["true"]})
        assert r.status_code == 403, r.text
        assert r.json()["error"].startswith("quota exceeded") and "max_functions" in r.text
        assert (await w["b"].put("/functions/three", json={"command": ["true"]})
                ).status_code == 201
        assert (await w["a"].delete("/functions/one")).status_code in (200, 204)
        assert (await w["a"].put("/functions/three", json={"command": ["true"]})
                ).status_code == 201


async def test_the_bundle_bytes_quota_is_403_and_a_redeploy_replaces_its_bytes(
        tmp_path: Path) -> None:
    small = tar_gz({"main.py": b"print(1)\n"})
    async with world(tmp_path, {"a": {"max_bundle_bytes": len(small) * 2}}) as w:
        async def put(client: httpx.AsyncClient, name: str, archive: bytes) -> httpx.Response:
            return await client.put(f"/functions/{name}", files={
                "spec": (None, json.dumps({"command": ["true"]}), "application/json"),
                "bundle": ("code.tar.gz", archive, "application/gzip")})

        assert (await put(w["a"], "one", small)).status_code == 201
        assert (await put(w["a"], "two", small)).status_code == 201
        r = await put(w["a"], "three", small)
        assert r.status_code == 403 and "max_bundle_bytes" in r.json()["error"]
        assert (await put(w["a"], "two", small)).status_code == 201  # replaces its bytes
        assert (await put(w["b"], "three", small)).status_code == 201


async def test_a_tenants_queued_async_calls_are_bounded(tmp_path: Path) -> None:
    async with world(tmp_path, {"a": {"max_queued": 2}}, max_concurrency=1) as w:
        # b's sync call holds the only slot: nothing queued is claimed meanwhile.
        w.hold["b"] = asyncio.Event()
        hog = asyncio.ensure_future(invoke(w["b"]))
        await running(w, 1)
        assert [(await invoke(w["a"], headers=ASYNC)).status_code for _ in range(2)] == [
            202, 202]
        over = await invoke(w["a"], headers=ASYNC)
        assert over.status_code == 429 and "max_queued" in over.json()["error"]
        assert int(over.headers["retry-after"]) >= 1
        assert (await invoke(w["b"], headers=ASYNC)).status_code == 202
        w.hold["b"].set()
        assert (await hog).status_code == 200
