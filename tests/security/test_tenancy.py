"""Who may do what, and what one tenant can learn of another: every route with no key, a
bad key, a revoked or expired key, a role too low and the right one; ids of another tenant
behave exactly like unknown ids; an invoker sees only its own calls.

In-process gateway over a real SQLite store and real keys (made as ``faas admin`` makes
them); the executor is the fake one (what runs does not matter here, who may run it does).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from faas.config import Settings
from faas.executors.fake import FakeExecutor
from faas.functions import Functions
from faas.gateway.app import create_app
from faas.metrics import Metrics
from faas.store.tenant_store import SqlTenants
from faas.tenancy import admin
from faas.tenancy.keys import new_key
from faas.tenancy.principal import Role

INVOKER, DEVELOPER, ADMIN = Role.INVOKER, Role.DEVELOPER, Role.ADMIN

#: Every route of the gateway and the least role it needs (None: public). Written out
#: here, apart from the code's table: a route opened (or added unclassified) fails a test.
EXPECTED: dict[tuple[str, str], Role | None] = {
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/openapi.json"): None,
    ("GET", "/docs"): None,
    ("GET", "/metrics"): ADMIN,
    ("GET", "/whoami"): INVOKER,
    ("POST", "/functions/{function_id}/invoke"): INVOKER,
    ("POST", "/function/{function_id}"): INVOKER,
    ("GET", "/invocations"): INVOKER,
    ("GET", "/invocations/{invocation_id}"): INVOKER,
    ("DELETE", "/invocations/{invocation_id}"): INVOKER,
    ("GET", "/functions"): DEVELOPER,
    ("PUT", "/functions/{function_id}"): DEVELOPER,
    ("GET", "/functions/{function_id}"): DEVELOPER,
    ("DELETE", "/functions/{function_id}"): DEVELOPER,
    ("GET", "/functions/{function_id}/versions/{version}"): DEVELOPER,
    ("GET", "/secrets"): DEVELOPER,
    ("GET", "/secrets/{name}"): DEVELOPER,
    ("PUT", "/secrets/{name}"): DEVELOPER,
    ("DELETE", "/secrets/{name}"): DEVELOPER,
    ("POST", "/tenants"): ADMIN,
    ("GET", "/tenants"): ADMIN,
    ("GET", "/tenants/{name}"): ADMIN,
    ("PUT", "/tenants/{name}/quotas"): ADMIN,
    ("POST", "/keys"): ADMIN,
    ("GET", "/keys"): ADMIN,
    ("DELETE", "/keys/{key_id}"): ADMIN,
    ("GET", "/audit"): ADMIN,
}
SAMPLE_PARAMS = {"function_id": "f", "invocation_id": "0" * 32, "version": "1",
                 "name": "acme", "key_id": "0" * 12}


@dataclass
class World:
    client: httpx.AsyncClient
    tenants: SqlTenants
    routes: list[tuple[str, str]]
    #: (tenant, role) -> key
    keys: dict[tuple[str, Role], str]

    def auth(self, tenant: str, role: Role) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[(tenant, role)]}"}


async def make_key(tenants: SqlTenants, tenant: str, role: Role, **kw: float) -> str:
    return (await admin.create_key(tenants, tenant, role.label, "test", **kw)).key


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = Settings(executors=("sandbox",), data_dir=tmp_path / "data")
    functions = await Functions.open(settings, Metrics())
    app = create_app(settings, {"sandbox": FakeExecutor(name="sandbox")}, functions=functions)
    tenants = functions.store.tenants
    keys: dict[tuple[str, Role], str] = {}
    for tenant in ("acme", "rival"):
        await admin.create_tenant(tenants, tenant)
        for role in Role:
            keys[(tenant, role)] = await make_key(tenants, tenant, role)
    routes = [(method, route.path) for route in app.routes if isinstance(route, APIRoute)
              for method in sorted(route.methods or ()) if method != "HEAD"]
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t",
                                         timeout=30) as client:
                yield World(client, tenants, routes, keys)
    finally:
        await functions.close()


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PARAMS[m.group(1)], path)


async def send(world: World, method: str, path: str,
               headers: dict[str, str] | dict[str, bytes] | None = None) -> httpx.Response:
    return await world.client.request(method, concrete(path), headers=headers or {},
                                      json={} if method in ("POST", "PUT") else None)


def test_the_table_above_lists_every_route_the_gateway_has(world: World) -> None:
    documented = set(world.routes) | {("GET", "/docs"), ("GET", "/openapi.json")}
    assert documented == set(EXPECTED), (
        "a route was added or removed: classify it in EXPECTED (and in faas.gateway.access)")


async def test_public_routes_need_no_key(world: World) -> None:
    for (method, path), role in EXPECTED.items():
        if role is None:
            r = await send(world, method, path)
            assert r.status_code == 200, (method, path, r.status_code)


@pytest.mark.parametrize("presented", [
    None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer faas_" + "0" * 12 + "_" + "A" * 43,
    "Bearer faas_short", "bearer " + "x" * 300, "Bearer faas_0123456789ab_" + "é" * 43],
    ids=["none", "empty", "no-key", "basic", "unknown", "malformed", "huge", "non-ascii"])
async def test_every_closed_route_refuses_a_missing_or_bad_key(world: World,
                                                               presented: str | None) -> None:
    headers = {} if presented is None else {"authorization": presented.encode()}
    for (method, path), role in EXPECTED.items():
        if role is None:
            continue
        r = await send(world, method, path, headers)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"error": "missing or invalid API key (Authorization: Bearer <key>)"}


async def test_a_revoked_or_expired_key_is_refused_everywhere(world: World) -> None:
    revoked = await make_key(world.tenants, "acme", ADMIN)
    ok = await world.client.get("/whoami", headers={"authorization": f"Bearer {revoked}"})
    assert ok.status_code == 200
    key_id = revoked.split("_")[1]
    r = await world.client.delete(f"/keys/{key_id}", headers=world.auth("acme", ADMIN))
    assert r.status_code == 200 and r.json()["revoked_at"]
    expired = await make_key(world.tenants, "acme", ADMIN, expires_in_s=0.001)
    for key in (revoked, expired):
        for (method, path), role in EXPECTED.items():
            if role is not None:
                r = await send(world, method, path, {"authorization": f"Bearer {key}"})
                assert r.status_code == 401, (method, path, r.status_code)


async def test_each_route_refuses_the_roles_below_its_own_and_admits_its_own(
        world: World) -> None:
    for (method, path), needed in EXPECTED.items():
        if needed is None:
            continue
        for role in Role:
            r = await send(world, method, path, world.auth("acme", role))
            if role < needed:
                assert r.status_code == 403, (method, path, role, r.status_code, r.text)
                assert needed.label in r.json()["error"]
            else:
                assert r.status_code not in (401, 403), (method, path, role, r.text)


async def test_a_key_of_any_role_says_who_it_is(world: World) -> None:
    for role in Role:
        r = await world.client.get("/whoami", headers=world.auth("rival", role))
        assert r.json()["tenant"] == "rival" and r.json()["role"] == role.label


def scrub(text: str, *names: str) -> str:
    for name in names:
        text = text.replace(name, "<ID>")
    return text


async def deploy(world: World, tenant: str, name: str) -> None:
    r = await world.client.put(f"/functions/{name}", json={"command": ["echo", tenant]},
                               headers=world.auth(tenant, DEVELOPER))
    assert r.status_code == 201, r.text


async def test_another_tenants_function_behaves_exactly_like_an_unknown_one(
        world: World) -> None:
    await deploy(world, "acme", "payroll")
    mine = world.auth("acme", DEVELOPER)
    theirs = world.auth("rival", DEVELOPER)
    assert (await world.client.get("/functions/payroll", headers=mine)).status_code == 200
    unknown = "nosuchfn"
    for method, path in [("GET", "/functions/{}"), ("GET", "/functions/{}/versions/1"),
                         ("DELETE", "/functions/{}"), ("POST", "/functions/{}/invoke"),
                         ("POST", "/function/{}")]:
        seen = []
        for name in ("payroll", unknown):
            r = await world.client.request(method, path.format(name), headers=theirs,
                                           json={} if method == "POST" else None)
            seen.append((r.status_code, scrub(r.text, name)))
        assert seen[0] == seen[1], (method, path, seen)
        assert seen[0][0] in (400, 404), seen
    listed = (await world.client.get("/functions", headers=theirs)).json()["items"]
    assert listed == []
    # And it is still there, untouched, for its owner.
    r = await world.client.post("/functions/payroll/invoke", json={}, headers=mine)
    assert r.status_code == 200 and r.json()["stdout"] == "", r.text
    assert (await world.client.get("/functions/payroll", headers=mine)).status_code == 200


async def call(world: World, tenant: str, role: Role, name: str = "job",
               async_: bool = False) -> str:
    headers = {**world.auth(tenant, role), **({"prefer": "respond-async"} if async_ else {})}
    r = await world.client.post(f"/functions/{name}/invoke", json={"command": ["x"]},
                                headers=headers)
    assert r.status_code in (200, 202), r.text
    return str(r.headers.get("x-invocation-id") or r.json()["invocation_id"])


async def test_another_tenants_invocation_ids_behave_exactly_like_unknown_ones(
        world: World) -> None:
    ids = [await call(world, "acme", DEVELOPER),
           await call(world, "acme", DEVELOPER, async_=True)]
    theirs = world.auth("rival", ADMIN)  # even the other tenant's admin
    for invocation_id in ids:
        wait = await world.client.get(f"/invocations/{invocation_id}?wait=5",
                                      headers=world.auth("acme", DEVELOPER))
        assert wait.status_code == 200
        unknown = uuid.uuid4().hex
        for method in ("GET", "DELETE"):
            seen = []
            for target in (invocation_id, unknown):
                r = await world.client.request(method, f"/invocations/{target}",
                                               headers=theirs)
                seen.append((r.status_code, scrub(r.text, target)))
            assert seen[0] == seen[1] and seen[0][0] == 404, seen
    for query in ("", "?function=job", "?status=succeeded"):
        r = await world.client.get(f"/invocations{query}", headers=theirs)
        assert r.json()["items"] == [], (query, r.text)
    mine = await world.client.get("/invocations", headers=world.auth("acme", DEVELOPER))
    assert {item["id"] for item in mine.json()["items"]} == set(ids)
    assert {item["function_id"] for item in mine.json()["items"]} == {"job"}


async def test_an_invoker_sees_only_the_calls_its_own_key_made(world: World) -> None:
    other_invoker = await make_key(world.tenants, "acme", INVOKER)
    first = await call(world, "acme", INVOKER)
    second_r = await world.client.post(
        "/functions/job/invoke", json={"command": ["x"]},
        headers={"authorization": f"Bearer {other_invoker}"})
    second = second_r.headers["x-invocation-id"]
    developer = world.auth("acme", DEVELOPER)
    for invocation_id in (first, second):
        r = await world.client.get(f"/invocations/{invocation_id}?wait=5", headers=developer)
        assert r.status_code == 200
    invoker = world.auth("acme", INVOKER)
    assert (await world.client.get(f"/invocations/{first}", headers=invoker)).status_code == 200
    assert (await world.client.get(f"/invocations/{second}",
                                   headers=invoker)).status_code == 404
    assert (await world.client.delete(f"/invocations/{second}",
                                      headers=invoker)).status_code == 404
    listed = (await world.client.get("/invocations", headers=invoker)).json()["items"]
    assert [item["id"] for item in listed] == [first]
    everything = (await world.client.get("/invocations", headers=developer)).json()["items"]
    assert {item["id"] for item in everything} == {first, second}


async def test_idempotency_keys_do_not_cross_tenants(world: World) -> None:
    ids = []
    for tenant in ("acme", "rival"):
        r = await world.client.post(
            "/functions/job/invoke", json={"command": ["x"]},
            headers={**world.auth(tenant, INVOKER), "prefer": "respond-async",
                     "idempotency-key": "same-key"})
        assert r.status_code == 202, r.text
        ids.append(r.json()["invocation_id"])
    assert ids[0] != ids[1]


async def test_the_same_function_name_in_two_tenants_is_two_functions(world: World) -> None:
    await deploy(world, "acme", "hello")
    await deploy(world, "rival", "hello")
    for tenant in ("acme", "rival"):
        r = await world.client.post("/functions/hello/invoke", json={},
                                    headers=world.auth(tenant, INVOKER))
        assert r.status_code == 200, r.text
        detail = await world.client.get("/functions/hello", headers=world.auth(tenant,
                                                                                DEVELOPER))
        assert detail.json()["id"] == "hello"
        assert detail.json()["spec"]["command"] == ["echo", tenant]


async def test_admin_actions_and_deploys_are_audited_with_who_did_them(world: World) -> None:
    await deploy(world, "acme", "audited")
    r = await world.client.delete("/functions/audited", headers=world.auth("acme", DEVELOPER))
    assert r.status_code == 204
    made = await world.client.post("/keys", json={"tenant": "rival", "role": "invoker"},
                                   headers=world.auth("acme", ADMIN))
    assert made.status_code == 201 and made.json()["key"].startswith("faas_")
    listed = (await world.client.get("/keys", headers=world.auth("acme", ADMIN))).json()
    assert all("key" not in item and "key_hash" not in item for item in listed["items"])
    entries = (await world.client.get("/audit", headers=world.auth("acme", ADMIN))).json()
    actions = {(e["action"], e["target"], e["actor"]) for e in entries["items"]}
    developer_id = world.keys[("acme", DEVELOPER)].split("_")[1]
    admin_id = world.keys[("acme", ADMIN)].split("_")[1]
    assert ("function.deploy", "audited", developer_id) in actions
    assert ("function.delete", "audited", developer_id) in actions
    assert ("key.create", made.json()["id"], admin_id) in actions


def test_keys_are_random_and_only_their_hash_is_kept() -> None:
    made = {new_key().key for _ in range(200)}
    assert len(made) == 200
    one = new_key()
    assert one.key_hash != one.key.encode() and len(one.key_hash) == 32
    assert re.fullmatch(r"faas_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", one.key)
