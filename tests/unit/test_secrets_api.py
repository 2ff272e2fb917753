"""``/secrets`` over HTTP on the in-process app with a real store: values go in and never
come out, each tenant sees only its own, every answer is the documented one."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_openapi import assert_documented, client_for, document

from faas.config import Settings
from faas.executors.fake import FakeExecutor
from faas.functions import Functions
from faas.gateway.app import create_app
from faas.gateway.routes.secrets import MAX_BODY_BYTES
from faas.metrics import Metrics
from faas.secrets.names import MAX_SECRET_BYTES
from faas.store.tenant_records import KeyInfo
from faas.tenancy.keys import new_key

ONE = "/secrets/{name}"
VALUE = "correct horse battery staple"


class Api:
    def __init__(self, client: httpx.AsyncClient, functions: Functions,
                 keys: dict[str, str]) -> None:
        self.client = client
        self.functions = functions
        self.keys = keys

    def as_(self, who: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[who]}"}


async def add_key(functions: Functions, tenant: str, role: str) -> str:
    made = new_key()
    await functions.store.tenants.create_key(KeyInfo(
        made.key_id, tenant, role, f"{tenant}-{role}", made.key_hash, time.time_ns() // 1000))
    return made.key


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(data_dir=tmp_path, http_read_timeout_s=0.5)
    functions = await Functions.open(settings, Metrics())
    app = create_app(settings, {"sandbox": FakeExecutor()}, functions=functions)
    try:
        for tenant in ("acme", "beta"):
            await functions.store.tenants.create_tenant(tenant)
        keys = {"acme": await add_key(functions, "acme", "developer"),
                "beta": await add_key(functions, "beta", "developer"),
                "acme-invoker": await add_key(functions, "acme", "invoker")}
        async with client_for(app) as client:
            yield Api(client, functions, keys)
    finally:
        await functions.close()


async def test_values_go_in_and_never_come_out(api: Api) -> None:
    c = api.client
    doc = await document(c)
    r = await c.put("/secrets/db-password", json={"value": VALUE}, headers=api.as_("acme"))
    assert r.status_code == 201, r.text
    assert_documented(doc, ONE, "put", r)
    assert r.json()["name"] == "db-password" and r.json()["size"] == len(VALUE)
    r = await c.put("/secrets/db-password", json={"value_base64": base64.b64encode(
        b"\x00\xffbinary").decode()}, headers=api.as_("acme"))
    assert r.status_code == 200 and r.json()["size"] == 8
    assert_documented(doc, ONE, "put", r)
    await c.put("/secrets/token", json={"value": "t0k3n-" + VALUE}, headers=api.as_("acme"))

    answers = [await c.get("/secrets/db-password", headers=api.as_("acme")),
               await c.get("/secrets", headers=api.as_("acme"))]
    for r in answers:
        assert r.status_code == 200
        assert VALUE not in r.text and "binary" not in r.text and "t0k3n" not in r.text
        assert base64.b64encode(b"\x00\xffbinary").decode() not in r.text
    assert_documented(doc, ONE, "get", answers[0])
    assert_documented(doc, "/secrets", "get", answers[1])
    assert [i["name"] for i in answers[1].json()["items"]] == ["db-password", "token"]
    assert set(answers[0].json()) == {"name", "size", "created_at", "updated_at"}

    # What the store holds is sealed; the call path opens it.
    rows = await api.functions.store.secrets.get_values("acme", ["db-password", "token"])
    assert len(rows) == 2
    assert not any(b"t0k3n" in row.ciphertext or b"binary" in row.ciphertext
                   for row in rows.values())


async def test_another_tenants_secret_does_not_exist(api: Api) -> None:
    c = api.client
    await c.put("/secrets/shared", json={"value": VALUE}, headers=api.as_("acme"))
    for method in ("GET", "DELETE"):
        r = await c.request(method, "/secrets/shared", headers=api.as_("beta"))
        assert r.status_code == 404 and VALUE not in r.text
    assert (await c.get("/secrets", headers=api.as_("beta"))).json() == {"items": []}
    r = await c.put("/secrets/shared", json={"value": "beta's"}, headers=api.as_("beta"))
    assert r.status_code == 201  # a name of its own
    r = await c.get("/secrets/shared", headers=api.as_("acme"))
    assert r.json()["size"] == len(VALUE)


async def test_delete_then_gone(api: Api) -> None:
    c = api.client
    doc = await document(c)
    await c.put("/secrets/s", json={"value": "v"}, headers=api.as_("acme"))
    r = await c.delete("/secrets/s", headers=api.as_("acme"))
    assert r.status_code == 204 and "204" in doc["paths"][ONE]["delete"]["responses"]
    for method in ("GET", "DELETE"):
        r = await c.request(method, "/secrets/s", headers=api.as_("acme"))
        assert r.status_code == 404
        assert_documented(doc, ONE, method.lower(), r)


@pytest.mark.parametrize("kwargs, status", [
    ({"json": {"value": "x" * MAX_SECRET_BYTES}}, 201),
    ({"json": {"value": "x" * (MAX_SECRET_BYTES + 1)}}, 413),
    ({"json": {"value": "é" * (MAX_SECRET_BYTES // 2 + 1)}}, 413),  # bytes, not characters
    ({"json": {"value_base64": base64.b64encode(b"x" * MAX_SECRET_BYTES).decode()}}, 201),
    ({"json": {"value_base64": base64.b64encode(b"x" * (MAX_SECRET_BYTES + 1)).decode()}},
     413),
    ({"content": b"x" * (MAX_BODY_BYTES + 1), "headers": {"content-type": "application/json"}},
     413),
    ({"json": {"value": "a", "value_base64": "YQ=="}}, 400),
    ({"json": {}}, 400),
    ({"json": {"value": 5}}, 400),
    ({"json": {"value": "a", "extra": 1}}, 400),
    ({"json": {"value_base64": "not base64!"}}, 400),
    ({"json": ["value"]}, 400),
    ({"content": b"{", "headers": {"content-type": "application/json"}}, 400),
    ({"content": b'{"value": "\\ud800"}', "headers": {"content-type": "application/json"}},
     400),
    ({"content": b"value=x"}, 415),
])
async def test_bodies_are_checked_and_bounded(api: Api, kwargs: dict[str, Any],
                                              status: int) -> None:
    doc = await document(api.client)
    headers = {**kwargs.pop("headers", {}), **api.as_("acme")}
    r = await api.client.put("/secrets/bounded", **kwargs, headers=headers)
    assert r.status_code == status, r.text
    assert_documented(doc, ONE, "put", r)
    assert "xxxxxxxx" not in r.text


@pytest.mark.parametrize("name", [".hidden", "-x", "a.b", "x" * 65, "%2e%2e", "a%2Fb", "sp%20"])
async def test_bad_names_are_refused(api: Api, name: str) -> None:
    doc = await document(api.client)
    for method in ("PUT", "GET", "DELETE"):
        r = await api.client.request(method, f"/secrets/{name}", json={"value": "v"},
                                     headers=api.as_("acme"))
        # 400, or no such route: 404, or 403 (a path not in the role table needs admin)
        assert r.status_code in (400, 403, 404), (method, name, r.text)
        if r.status_code == 400:
            assert_documented(doc, ONE, method.lower(), r)
    assert (await api.client.get("/secrets", headers=api.as_("acme"))).json() == {"items": []}


async def test_only_developers_and_above_reach_the_secrets(api: Api) -> None:
    c = api.client
    assert (await c.get("/secrets")).status_code == 401
    r = await c.put("/secrets/s", json={"value": "v"}, headers=api.as_("acme-invoker"))
    assert r.status_code == 403
    assert (await c.get("/secrets", headers=api.as_("acme-invoker"))).status_code == 403
    assert (await c.get("/secrets", headers=api.as_("acme"))).json() == {"items": []}


async def test_writes_are_audited_under_the_callers_key(api: Api) -> None:
    c = api.client
    await c.put("/secrets/s", json={"value": VALUE}, headers=api.as_("acme"))
    await c.delete("/secrets/s", headers=api.as_("acme"))
    key_id = api.keys["acme"].split("_")[1]
    page = await api.functions.store.tenants.list_audit(tenant="acme")
    entries = [(e.action, e.actor, e.target) for e in page.items
               if e.action.startswith("secret.")]
    assert entries == [("secret.delete", key_id, "s"), ("secret.set", key_id, "s")]
    assert not any(VALUE in (e.detail or "") for e in page.items)


async def test_without_a_store_the_secrets_routes_are_a_documented_503() -> None:
    from test_openapi import make_app
    async with client_for(make_app()) as c:
        doc = await document(c)
        for method, path, doc_path in [("get", "/secrets", "/secrets"),
                                       ("get", "/secrets/s", ONE),
                                       ("delete", "/secrets/s", ONE),
                                       ("put", "/secrets/s", ONE)]:
            r = await c.request(method.upper(), path, json={"value": "v"})
            assert r.status_code == 503, r.text
            assert_documented(doc, doc_path, method, r)


async def test_an_ad_hoc_call_cannot_name_secrets() -> None:
    from test_openapi import make_app
    async with client_for(make_app()) as c:
        r = await c.post("/functions/f1/invoke", json={"command": ["true"],
                                                       "secrets": ["db-password"]})
        assert r.status_code == 400 and "secrets" in r.text
