"""Gateway and orchestrator behaviour over a fake executor (no sandboxes)."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from faas.config import Settings
from faas.errors import AgentProtocolError, FaasError, SandboxError
from faas.executors.fake import FakeExecutor
from faas.gateway.app import create_app
from faas.models import ExecutionSpec, InvocationResult

URL = "/functions/f1/invoke"


async def slow(spec: ExecutionSpec) -> InvocationResult:
    await asyncio.sleep(float(spec.command[1]) if len(spec.command) > 1 else 0)
    return InvocationResult(stdout=b"partial", exit_code=0)


def make(settings: Settings, executor: FakeExecutor) -> tuple[httpx.AsyncClient, object]:
    app = create_app(settings, {"sandbox": executor})
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://t"), app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    c, _ = make(Settings(max_payload_bytes=1000), FakeExecutor())
    async with c:
        yield c


async def test_invoke_echo_and_request_id(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json={"command": ["cat"], "payload": [104, 105]},
                          headers={"x-request-id": "abc-123"})
    assert r.status_code == 200
    body = r.json()
    assert body["stdout"] == "hi" and body["error"] is None and body["exit_code"] == 0
    assert body["request_id"] == "abc-123" == r.headers["x-request-id"]
    r = await client.post(URL, json={"command": ["cat"]}, headers={"x-request-id": "bad id!"})
    assert r.headers["x-request-id"] != "bad id!" and len(r.headers["x-request-id"]) == 32


@pytest.mark.parametrize("content, fragment", [
    (b"{not json", "not valid JSON"),
    (b"[1,2]", "JSON object"),
    (b'{"command": "ls"}', "command"),
    (b'{"command": []}', "command"),
    (b'{"command": ["ls"], "env_vars": ["X"]}', "KEY=VALUE"),
    (b'{"command": ["ls"], "payload": [300]}', "0-255"),
    (b'{"command": ["ls"], "executor": "nope"}', "unknown or unavailable executor"),
    (b'{"command": ["ls"], "timeout_s": 100000}', "exceeds the maximum"),
    (b'{"command": ["ls"], "memory_mb": 999999}', "exceeds the maximum"),
])
async def test_bad_input_is_a_400_with_an_error(client: httpx.AsyncClient, content: bytes,
                                                fragment: str) -> None:
    r = await client.post(URL, content=content)
    assert r.status_code == 400
    assert fragment in r.json()["error"]


async def test_oversize_body_and_payload_are_413(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json={"command": ["cat"], "payload": [1] * 1001})
    assert r.status_code == 413 and "payload" in r.json()["error"]
    r = await client.post(URL, content=b"x" * 10_000_000)
    assert r.status_code == 413 and "body" in r.json()["error"]


async def test_bad_function_id_and_unknown_route(client: httpx.AsyncClient) -> None:
    r = await client.post("/functions/b%20d/invoke", json={"command": ["x"]})
    assert r.status_code == 400
    r = await client.get("/nope")
    assert r.status_code == 404 and "error" in r.json()
    r = await client.get(URL)
    assert r.status_code == 405 and "error" in r.json()


async def test_timeout_is_504_with_partial_output() -> None:
    async def partial(spec: ExecutionSpec) -> InvocationResult:
        return InvocationResult(stdout=b"so far", timed_out=True, error="timed out")
    c, _ = make(Settings(), FakeExecutor(partial))
    async with c:
        r = await c.post(URL, json={"command": ["x"], "timeout_s": 1})
    assert r.status_code == 504
    body = r.json()
    assert body["stdout"] == "so far" and body["timed_out"] and "timed out" in body["error"]


async def test_fake_deadline_is_enforced() -> None:
    c, _ = make(Settings(), FakeExecutor(slow))
    async with c:
        r = await c.post(URL, json={"command": ["sleep", "5"], "timeout_s": 0.2})
    assert r.status_code == 504


async def test_admission_full_gives_429_with_retry_after() -> None:
    executor = FakeExecutor(slow)
    c, _ = make(Settings(max_concurrency=2, max_queue=1), executor)
    async with c:
        tasks = [asyncio.ensure_future(c.post(URL, json={"command": ["sleep", "0.5"]}))
                 for _ in range(6)]
        responses = await asyncio.gather(*tasks)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 200, 429, 429, 429]
    rejected = next(r for r in responses if r.status_code == 429)
    assert rejected.headers["retry-after"] == "1" and "busy" in rejected.json()["error"]


async def test_metrics_health_ready_openapi(client: httpx.AsyncClient) -> None:
    await client.post(URL, json={"command": ["cat"]})
    await client.post(URL, content=b"{")
    text = (await client.get("/metrics")).text
    assert 'faas_invocations_total{executor="sandbox",outcome="ok"} 1.0' in text
    assert "faas_queue_wait_seconds_bucket" in text and "faas_in_flight" in text
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"]
    doc = (await client.get("/openapi.json")).json()
    assert "/functions/{function_id}/invoke" in doc["paths"]


async def test_shutdown_finishes_in_flight_then_refuses() -> None:
    executor = FakeExecutor(slow)
    c, app = make(Settings(), executor)
    orch = app.state.orchestrator  # type: ignore[attr-defined]
    async with c:
        running = asyncio.ensure_future(c.post(URL, json={"command": ["sleep", "0.3"]}))
        await asyncio.sleep(0.1)
        await orch.shutdown(grace_s=5)
        assert (await running).status_code == 200
        r = await c.post(URL, json={"command": ["cat"]})
        assert r.status_code == 503 and "shutting down" in r.json()["error"]
        assert (await c.get("/readyz")).status_code == 503
    assert executor.closed


async def test_shutdown_cancels_what_outlives_the_grace() -> None:
    executor = FakeExecutor(slow)
    c, app = make(Settings(), executor)
    async with c:
        running = asyncio.ensure_future(c.post(URL, json={"command": ["sleep", "30"]}))
        await asyncio.sleep(0.1)
        await app.state.orchestrator.shutdown(grace_s=0.1)  # type: ignore[attr-defined]
        r = await asyncio.wait_for(running, 5)
    assert r.status_code == 503 and "killed" in r.json()["error"]
    assert executor.running == 0


async def test_start_kind_is_reported_and_counted() -> None:
    async def warm(spec: ExecutionSpec) -> InvocationResult:
        return InvocationResult(exit_code=0, start_kind="warm", start_ms=3.0, duration_ms=10.0)

    executor = FakeExecutor(warm)
    executor.pool_stats = lambda: [("1cpu-256m", 2, 1)]  # type: ignore[attr-defined]
    c, _ = make(Settings(), executor)
    async with c:
        body = (await c.post(URL, json={"command": ["x"]})).json()
        text = (await c.get("/metrics")).text
    assert body["start"] == {"kind": "warm", "start_ms": 3.0, "run_ms": 7.0}
    assert 'faas_sandbox_starts_total{executor="fake",kind="warm"} 1.0' in text
    assert 'faas_pool_ready{executor="fake",pool="1cpu-256m"} 2.0' in text
    assert 'faas_sandbox_start_seconds_count{executor="fake",kind="warm"} 1.0' in text


async def test_an_executor_bug_is_a_json_500() -> None:
    async def broken(spec: ExecutionSpec) -> InvocationResult:
        raise ZeroDivisionError("bug")

    app = create_app(Settings(), {"sandbox": FakeExecutor(broken)})
    # Starlette re-raises after answering (for the server's log); don't let httpx.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.post(URL, json={"command": ["x"]})
    assert r.status_code == 500 and r.json() == {"error": "internal server error"}


def test_repeated_warnings_are_limited_but_per_invocation_lines_never() -> None:
    import logging

    from faas.logs import BURST, RepeatFilter

    f = RepeatFilter()

    def record(name: str, level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, None, None)

    info = [f.filter(record("faas.orchestrator", logging.INFO, "invocation finished"))
            for _ in range(BURST * 5)]
    assert all(info)
    warn = [f.filter(record("faas.gateway", logging.ERROR, "invocation failed: %s"))
            for _ in range(BURST * 5)]
    assert warn.count(True) == BURST
    noisy = [f.filter(record("faas.gateway.guard", logging.INFO, "closed a connection"))
             for _ in range(BURST * 5)]
    assert noisy.count(True) == BURST


@pytest.mark.parametrize("error", [
    SandboxError("cannot create cgroup /sys/fs/cgroup/memory/faas/g1x2-ab-3: EMFILE"),
    AgentProtocolError("frame from /tmp/faas-vm-1x2-abc/channel.sock truncated"),
])
async def test_platform_failures_answer_without_host_details(error: FaasError) -> None:
    async def failing(spec: ExecutionSpec) -> InvocationResult:
        raise error

    c, _ = make(Settings(), FakeExecutor(failing))
    async with c:
        r = await c.post(URL, json={"command": ["x"]}, headers={"x-request-id": "rid-7"})
    assert r.status_code == error.status
    body = r.json()
    assert "rid-7" in body["error"]
    assert "/sys/fs" not in r.text and "/tmp/" not in r.text and "EMFILE" not in r.text


async def test_a_slow_metrics_render_never_delays_healthz(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    c, app = make(Settings(), FakeExecutor())
    orch = app.state.orchestrator  # type: ignore[attr-defined]
    rendering = threading.Event()

    def slow_render() -> bytes:
        rendering.set()
        time.sleep(1.0)  # a huge registry: blocking work
        return b""

    monkeypatch.setattr(orch.metrics, "render", slow_render)
    async with c:
        scrape = asyncio.ensure_future(c.get("/metrics"))
        while not rendering.is_set():
            await asyncio.sleep(0.01)
        health = await c.get("/healthz")
        # /healthz was answered while the render still ran: it did not wait for it.
        assert health.status_code == 200 and not scrape.done()
        assert (await scrape).status_code == 200
