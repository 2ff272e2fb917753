"""The generated OpenAPI document against what the server really does (fake executor).

Requests: the server accepts what the document's request schema allows
(schemathesis generates them) and refuses what it does not (a corpus of
each constraint's edge, both sides). Answers: every status a route can give
is listed for it, and every body matches the schema listed for its status.
Errors FastAPI itself raises are ``{"error": ...}`` with the gateway's codes.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import hypothesis
import jsonschema_rs
import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis import GenerationMode

from faas import errors
from faas.config import Settings
from faas.executors.fake import FakeExecutor
from faas.gateway.app import create_app
from faas.models import (
    MAX_ARG_BYTES,
    MAX_ARGS,
    MAX_ARGV_BYTES,
    MAX_ENV_BYTES,
    MAX_ENV_VARS,
    ExecutionSpec,
    InvocationResult,
)

URL = "/functions/f1/invoke"
INVOKE = "/functions/{function_id}/invoke"
PAYLOAD_LIMIT = 1000
SETTINGS = Settings(max_payload_bytes=PAYLOAD_LIMIT)


def make_app(executor: FakeExecutor | None = None, settings: Settings = SETTINGS) -> FastAPI:
    return create_app(settings, {"sandbox": executor or FakeExecutor()},
                      unavailable={"docker": "no daemon at /var/run/docker.sock"})


def client_for(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app()) as c:
        yield c


async def document(c: httpx.AsyncClient) -> dict[str, Any]:
    r = await c.get("/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A JSON-schema validator for ``schema``, its ``$ref``s resolved in ``doc``."""
    return jsonschema_rs.Draft202012Validator({**schema, "components": doc["components"]})


def request_schema(doc: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = doc["paths"][INVOKE]["post"]["requestBody"]
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    return schema


def answer_schema(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    responses = doc["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, not documented"
    schema: dict[str, Any] = responses[str(status)]["content"]["application/json"]["schema"]
    return schema


def assert_documented(doc: dict[str, Any], path: str, method: str,
                      response: httpx.Response) -> None:
    schema = answer_schema(doc, path, method, response.status_code)
    validator(doc, schema).validate(response.json())


def b64(n: int) -> str:
    return base64.b64encode(b"x" * n).decode()


# Each edge of each constraint: (body, the schema allows it). The server must
# agree: 200 for what the schema allows, 400/413 for what it does not.
EDGES: list[tuple[Any, bool]] = [
    ({"command": ["true"]}, True),
    ({"command": []}, False),
    ({"command": "ls"}, False),
    ({"command": [""]}, False),
    ({"command": ["x", ""]}, True),
    ({"command": ["x"] * MAX_ARGS}, True),
    ({"command": ["x"] * (MAX_ARGS + 1)}, False),
    ({"command": ["a\x00b"]}, False),
    ({"command": ["x", "a\x00"]}, False),
    ({"command": ["x" * MAX_ARG_BYTES]}, True),
    ({"command": ["x" * (MAX_ARG_BYTES + 1)]}, False),
    ({"command": [1]}, False),
    ({"command": ["x"], "env_vars": ["A=1", "_b9=", "K=x=y\n"]}, True),
    ({"command": ["x"], "env_vars": ["X"]}, False),
    ({"command": ["x"], "env_vars": ["1A=1"]}, False),
    ({"command": ["x"], "env_vars": ["A\n=1"]}, False),
    ({"command": ["x"], "env_vars": ["=1"]}, False),
    ({"command": ["x"], "env_vars": ["A=\x00"]}, False),
    ({"command": ["x"], "env_vars": ["K" * 256 + "=v"]}, True),
    ({"command": ["x"], "env_vars": ["K" * 257 + "=v"]}, False),
    ({"command": ["x"], "env_vars": [f"V{i}=x" for i in range(MAX_ENV_VARS)]}, True),
    ({"command": ["x"], "env_vars": [f"V{i}=x" for i in range(MAX_ENV_VARS + 1)]}, False),
    ({"command": ["x"], "payload": [0, 255]}, True),
    ({"command": ["x"], "payload": [256]}, False),
    ({"command": ["x"], "payload": [-1]}, False),
    ({"command": ["x"], "payload": ["1"]}, False),
    ({"command": ["x"], "payload": [1] * PAYLOAD_LIMIT}, True),
    ({"command": ["x"], "payload": [1] * (PAYLOAD_LIMIT + 1)}, False),
    ({"command": ["x"], "payload": "QUJD"}, True),
    ({"command": ["x"], "payload": "QQ=="}, True),
    ({"command": ["x"], "payload": ""}, True),
    ({"command": ["x"], "payload": None}, True),
    ({"command": ["x"], "payload": "QQ"}, False),
    ({"command": ["x"], "payload": "Q==="}, False),
    ({"command": ["x"], "payload": "QQ==QQ=="}, False),
    ({"command": ["x"], "payload": " QUJD"}, False),
    ({"command": ["x"], "payload": "***"}, False),
    ({"command": ["x"], "payload": {}}, False),
    ({"command": ["x"], "payload": b64(PAYLOAD_LIMIT - PAYLOAD_LIMIT % 3)}, True),
    ({"command": ["x"], "payload": b64(PAYLOAD_LIMIT + 3)}, False),
    ({"command": ["x"], "executor": "sandbox"}, True),
    ({"command": ["x"], "executor": None}, True),
    ({"command": ["x"], "executor": "nope"}, False),
    ({"command": ["x"], "image": "i" * 256}, True),
    ({"command": ["x"], "image": "i" * 257}, False),
    ({"command": ["x"], "timeout_s": 0.5}, True),
    ({"command": ["x"], "timeout_s": SETTINGS.max_timeout_s}, True),
    ({"command": ["x"], "timeout_s": SETTINGS.max_timeout_s + 0.5}, False),
    ({"command": ["x"], "timeout_s": 0}, False),
    ({"command": ["x"], "timeout_s": -1}, False),
    ({"command": ["x"], "timeout_s": "5"}, False),
    ({"command": ["x"], "timeout_s": True}, False),
    ({"command": ["x"], "memory_mb": 16}, True),
    ({"command": ["x"], "memory_mb": SETTINGS.max_memory_mb}, True),
    ({"command": ["x"], "memory_mb": SETTINGS.max_memory_mb + 1}, False),
    ({"command": ["x"], "memory_mb": 15}, False),
    ({"command": ["x"], "memory_mb": "256"}, False),
    ({"command": ["x"], "memory_mb": True}, False),
    ({"command": ["x"], "vcpus": 1}, True),
    ({"command": ["x"], "vcpus": SETTINGS.max_vcpus}, True),
    ({"command": ["x"], "vcpus": SETTINGS.max_vcpus + 1}, False),
    ({"command": ["x"], "vcpus": 0}, False),
    ({"command": ["x"], "output_encoding": "base64"}, True),
    ({"command": ["x"], "output_encoding": "hex"}, False),
    ({"command": ["x"], "nope": 1}, False),
    ([], False),
    ("x", False),
]

# What JSON schema cannot say: byte totals in UTF-8 (each is in the field's
# description) and a JSON integer written as 256.0 (the schema's "integer"
# matches it; the server is strict). The server refuses these; the document
# allows them and says so in words.
BEYOND_SCHEMA: list[tuple[Any, str]] = [
    ({"command": ["\u00e9" * MAX_ARG_BYTES]}, f"{MAX_ARG_BYTES} bytes"),
    ({"command": ["x" * 60_000] * 5}, f"{MAX_ARGV_BYTES} in all"),
    ({"command": ["x"], "env_vars": ["A=" + "x" * 40_000, "B=" + "x" * 40_000]},
     f"{MAX_ENV_BYTES} bytes in all"),
    ({"command": ["x"], "payload": b64(PAYLOAD_LIMIT + 1)}, f"{PAYLOAD_LIMIT} bytes"),
    ({"command": ["x"], "memory_mb": 256.0}, "256.0 is refused"),
    ({"command": ["x"], "vcpus": 2.0}, "2.0 is refused"),
    ({"command": ["x"], "payload": [1.0]}, "JSON integers"),
]


@pytest.mark.parametrize("body, allowed", EDGES, ids=[str(i) for i in range(len(EDGES))])
async def test_the_server_enforces_exactly_the_request_schema(
        client: httpx.AsyncClient, body: Any, allowed: bool) -> None:
    schema = request_schema(await document(client))
    assert validator(await document(client), schema).is_valid(body) is allowed, body
    r = await client.post(URL, json=body)
    if allowed:
        assert r.status_code == 200, (body, r.text)
    else:
        assert r.status_code in (400, 413), (body, r.text)
        assert isinstance(r.json()["error"], str)


@pytest.mark.parametrize("body, words", BEYOND_SCHEMA,
                         ids=[str(i) for i in range(len(BEYOND_SCHEMA))])
async def test_what_json_schema_cannot_say_is_described(
        client: httpx.AsyncClient, body: dict[str, Any], words: str) -> None:
    doc = await document(client)
    schema = request_schema(doc)
    assert validator(doc, schema).is_valid(body)
    r = await client.post(URL, json=body)
    assert r.status_code in (400, 413), r.text
    described = [schema["properties"][k].get("description", "") for k in body]
    assert any(words in d for d in described), (words, described)


@pytest.mark.parametrize("function_id", [
    "f1", "a.b_c-9", "x" * 128, "x" * 129, "", "f\n", "f\r", "f x", "f\x00", "f/g", "\u00e9"])
async def test_the_server_enforces_exactly_the_declared_function_id(
        client: httpx.AsyncClient, function_id: str) -> None:
    doc = await document(client)
    (declared,) = [p for p in doc["paths"][INVOKE]["post"]["parameters"]
                   if p["name"] == "function_id"]
    allowed = bool(function_id) and validator(doc, declared["schema"]).is_valid(function_id)
    r = await client.post(f"/functions/{quote(function_id, safe='')}/invoke",
                          json={"command": ["x"]})
    if allowed:
        assert r.status_code == 200, r.text
    elif not function_id or "/" in function_id:  # not one path segment: no such route
        assert r.status_code == 404 and "no route" in r.json()["error"], r.text
    else:
        assert r.status_code == 400 and "function_id" in r.json()["error"], r.text


def _integer_written_as_float(body: Any) -> bool:
    values = [body.get("memory_mb"), body.get("vcpus")] if isinstance(body, dict) else []
    payload = body.get("payload") if isinstance(body, dict) else None
    values += payload if isinstance(payload, list) else []
    return any(isinstance(v, float) for v in values)


def test_whatever_the_schema_allows_the_server_accepts() -> None:
    """Schemathesis generates requests from the document; each must be a 200 (or the
    documented 503 for a tier the document names but this host could not start, or the
    404 of a pinned version where nothing is deployed)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", make_app())
    operation = schema[INVOKE]["POST"]
    refused: list[str] = []

    @hypothesis.given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    @hypothesis.settings(max_examples=40, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    def run(case: Any) -> None:
        hypothesis.assume(not _integer_written_as_float(case.body))
        hypothesis.assume(not isinstance((case.query or {}).get("version"), float))
        # What the schema cannot say: the async-only headers are refused on a sync call
        # (described on each), and this app keeps no records (an async call is a 503).
        headers = {k.lower(): v for k, v in (case.headers or {}).items()}
        hypothesis.assume("x-callback-url" not in headers and "idempotency-key" not in headers)
        hypothesis.assume("respond-async" not in str(headers.get("prefer", "")).lower())
        hypothesis.assume(str((case.query or {}).get("async")).lower() not in ("true", "1", "yes"))
        # The document's bearer scheme makes up a key; this app runs open (no keys exist),
        # where only a request without a key is let in.
        for name in [k for k in (case.headers or {}) if k.lower() == "authorization"]:
            del case.headers[name]
        response = case.call()
        unavailable = response.status_code == 503 and case.body.get("executor") == "docker"
        # ?version= pins a deployed version; none is deployed here: the documented 404.
        pinned = response.status_code == 404 and "version" in (case.query or {})
        if response.status_code != 200 and not unavailable and not pinned:
            refused.append(f"{response.status_code} {response.text[:200]} for {case.query} "
                           f"{case.body!r:.300}")

    run()
    assert not refused, refused


def _raising(exc: Exception) -> FakeExecutor:
    async def handler(spec: ExecutionSpec) -> InvocationResult:
        raise exc
    return FakeExecutor(handler)


# Raised only by routes that change stored state (a deploy racing another), never by a call.
_NOT_FROM_AN_INVOCATION: tuple[type[errors.FaasError], ...] = (errors.Conflict,)


def _every_faas_error() -> list[errors.FaasError]:
    made: list[errors.FaasError] = []
    for name in dir(errors):
        cls = getattr(errors, name)
        if (isinstance(cls, type) and issubclass(cls, errors.FaasError)
                and not issubclass(cls, _NOT_FROM_AN_INVOCATION)):
            if cls is errors.InvocationTimeout:
                made.append(cls("timed out", InvocationResult(stdout=b"so far", timed_out=True)))
            else:
                made.append(cls("no"))
    return made


@pytest.mark.parametrize("error", _every_faas_error(), ids=lambda e: type(e).__name__)
async def test_every_error_an_invocation_can_raise_is_a_documented_answer(
        error: errors.FaasError) -> None:
    async with client_for(make_app(_raising(error))) as c:
        r = await c.post(URL, json={"command": ["x"]})
        assert r.status_code == error.status
        assert_documented(await document(c), INVOKE, "post", r)


async def test_the_gateways_own_refusals_and_results_are_documented() -> None:
    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"command": '
        await asyncio.sleep(1)
        yield b'["x"]}'

    async def rich(spec: ExecutionSpec) -> InvocationResult:
        return InvocationResult(stdout=b"\xff", exit_code=0, start_kind="warm", start_ms=1.0,
                                extra={"microvm": {"driver": "qemu", "vcpus": 1}})

    settings = Settings(max_payload_bytes=PAYLOAD_LIMIT, http_read_timeout_s=0.2)
    async with client_for(make_app(FakeExecutor(rich), settings)) as c:
        doc = await document(c)
        answers = [
            await c.post(URL, content=b"{not json"),
            await c.post("/functions/b%20d/invoke", json={"command": ["x"]}),
            await c.post(URL, content=b"x" * 10_000_000),
            await c.post(URL, content=slow_body()),
            await c.post(URL, json={"command": ["x"], "output_encoding": "base64"}),
            await c.post(URL, json={"command": ["x"], "timeout_s": 0.01}),
        ]
        assert [r.status_code for r in answers] == [400, 400, 413, 408, 200, 200]
        assert answers[4].json()["start"]["kind"] == "warm"
        for r in answers:
            assert_documented(doc, INVOKE, "post", r)


async def test_operations_answer_as_documented() -> None:
    app = make_app()
    async with client_for(app) as c:
        doc = await document(c)
        assert_documented(doc, "/healthz", "get", await c.get("/healthz"))
        ready = await c.get("/readyz")
        assert ready.status_code == 200
        assert_documented(doc, "/readyz", "get", ready)
        metrics = await c.get("/metrics")
        assert list(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == [
            metrics.headers["content-type"]]
        await app.state.orchestrator.shutdown(grace_s=1)
        not_ready = await c.get("/readyz")
        assert not_ready.status_code == 503
        assert_documented(doc, "/readyz", "get", not_ready)


async def test_the_document_lists_no_422_and_invokes_name_their_limits(
        client: httpx.AsyncClient) -> None:
    doc = await document(client)
    statuses = {s for ops in doc["paths"].values() for op in ops.values()
                for s in op["responses"]}
    assert "422" not in statuses and "HTTPValidationError" not in doc["components"]["schemas"]
    props = request_schema(doc)["properties"]
    assert props["executor"]["anyOf"][0]["enum"] == ["docker", "sandbox"]
    assert props["timeout_s"]["anyOf"][0]["maximum"] == SETTINGS.max_timeout_s
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize("method, path, allow", [
    ("GET", URL, "POST"),
    ("DELETE", "/healthz", "GET, HEAD"),
    ("POST", "/metrics", "GET, HEAD"),
    ("PUT", "/openapi.json", "GET, HEAD"),
])
async def test_405_is_a_json_error_with_allow(client: httpx.AsyncClient, method: str,
                                              path: str, allow: str) -> None:
    r = await client.request(method, path)
    assert r.status_code == 405 and r.headers["allow"] == allow
    assert r.json() == {"error": f"method {method} not allowed here"}
    assert (await client.request(allow.split(",")[0], path,
                                 json={"command": ["x"]})).status_code == 200


async def test_fastapis_own_errors_are_json_with_the_gateways_codes() -> None:
    app = make_app()

    @app.get("/probe")
    async def probe(n: int) -> dict[str, int]:  # a typed parameter FastAPI validates
        return {"n": n}

    async with client_for(app) as c:
        r = await c.get("/probe", params={"n": "x"})
        assert r.status_code == 400 and set(r.json()) == {"error"}
        assert r.json()["error"].startswith("invalid request: query.n: ")
        assert (await c.get("/probe", params={"n": "3"})).json() == {"n": 3}
        r = await c.get("/no/such/route")
        assert r.status_code == 404 and r.json() == {"error": "no route for GET /no/such/route"}
        r = await c.head("/healthz")
        assert r.status_code == 200


# -- deployed functions: every new route answers only what the document lists ----------

FUNCTION = "/functions/{function_id}"


async def _functions_app(tmp_path: Any, executor: FakeExecutor | None = None) -> Any:
    from faas.functions import Functions
    from faas.metrics import Metrics
    settings = Settings(max_payload_bytes=PAYLOAD_LIMIT, data_dir=tmp_path,
                        max_bundle_bytes=4096, http_read_timeout_s=0.3)
    functions = await Functions.open(settings, Metrics())
    app = create_app(settings, {"sandbox": executor or FakeExecutor()},
                     unavailable={"docker": "no daemon"}, functions=functions)
    return app, functions


async def test_the_functions_routes_answer_as_documented(tmp_path: Any) -> None:
    async def by_command(spec: ExecutionSpec) -> InvocationResult:
        if spec.command[0] == "sleep":
            return InvocationResult(stdout=b"so far", timed_out=True)
        code = 0 if spec.command[0] == "true" else 3
        return InvocationResult(stdout=b"out", stderr=b"why", exit_code=code,
                                error=None if code == 0 else "exit status 3")

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"command": '
        await asyncio.sleep(1)
        yield b'["x"]}'

    app, functions = await _functions_app(tmp_path, FakeExecutor(by_command))
    try:
        async with client_for(app) as c:
            doc = await document(c)
            calls: list[tuple[str, str, int, httpx.Response]] = [
                (FUNCTION, "put", 201, await c.put("/functions/f", json={"command": ["true"]})),
                (FUNCTION, "put", 201, await c.put("/functions/bad", json={"command": ["x"]})),
                (FUNCTION, "put", 201, await c.put("/functions/s", json={"command": ["sleep"]})),
                (FUNCTION, "put", 400, await c.put("/functions/f", json={"command": []})),
                (FUNCTION, "put", 400, await c.put("/functions/f", content=b"{",
                                                   headers={"content-type": "application/json"})),
                (FUNCTION, "put", 400, await c.put("/functions/.f", json={"command": ["x"]})),
                (FUNCTION, "put", 413, await c.put("/functions/f", files={
                    "spec": (None, '{"command": ["x"]}'), "bundle": ("b", b"x" * 5000)})),
                (FUNCTION, "put", 415, await c.put("/functions/f", content=b"x")),
                (FUNCTION, "put", 408, await c.put("/functions/f", content=slow_body(),
                                                   headers={"content-type": "application/json"})),
                ("/functions", "get", 200, await c.get("/functions", params={"label": "a=b"})),
                ("/functions", "get", 400, await c.get("/functions", params={"limit": 0})),
                (FUNCTION, "get", 200, await c.get("/functions/f")),
                (FUNCTION, "get", 404, await c.get("/functions/nope")),
                (FUNCTION, "get", 400, await c.get("/functions/.x")),
                (FUNCTION + "/versions/{version}", "get", 200,
                 await c.get("/functions/f/versions/1")),
                (FUNCTION + "/versions/{version}", "get", 404,
                 await c.get("/functions/f/versions/2")),
                (INVOKE, "post", 200, await c.post("/functions/f/invoke")),
                (INVOKE, "post", 400, await c.post("/functions/f/invoke",
                                                   json={"command": ["x"]})),
                (INVOKE, "post", 404, await c.post("/functions/f/invoke?version=5")),
                ("/function/{function_id}", "post", 404, await c.post("/function/nope")),
                ("/function/{function_id}", "post", 400,
                 await c.post("/function/f?" + "q" * 5000)),
                (FUNCTION, "delete", 404, await c.delete("/functions/nope")),
            ]
            for path, method, status, r in calls:
                assert r.status_code == status, (path, method, r.text)
                if r.headers.get("content-type", "").startswith("application/json"):
                    assert_documented(doc, path, method, r)
                else:
                    assert str(status) in doc["paths"][path][method]["responses"]
            raw = {"200": await c.post("/function/f"), "500": await c.post("/function/bad"),
                   "504": await c.post("/function/s")}
            for code, r in raw.items():
                assert r.status_code == int(code) and r.headers["x-request-id"]
                assert code in doc["paths"]["/function/{function_id}"]["post"]["responses"]
            assert raw["500"].headers["x-faas-error"] == "why"
            r = await c.delete("/functions/f")
            assert r.status_code == 204 and "204" in doc["paths"][FUNCTION]["delete"]["responses"]
    finally:
        await functions.close()


async def test_without_a_store_the_functions_routes_are_a_documented_503() -> None:
    async with client_for(make_app()) as c:
        doc = await document(c)
        for method, path, doc_path in [("get", "/functions", "/functions"),
                                       ("get", "/functions/f", FUNCTION),
                                       ("delete", "/functions/f", FUNCTION)]:
            r = await c.request(method.upper(), path)
            assert r.status_code == 503, r.text
            assert_documented(doc, doc_path, method, r)
        r = await c.put("/functions/f", json={"command": ["x"]})
        assert r.status_code == 503
        assert_documented(doc, FUNCTION, "put", r)
