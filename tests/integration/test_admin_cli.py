"""Tenants and API keys end to end: ``faas admin`` on the store, a real ``faas serve`` on it.

Keys are made the way an operator makes them (``faas admin create-key --out``
in a subprocess) and then presented to a real server; revoking one on the
store while the server runs must end it within the server's key cache time
(1 s), revoking one over HTTP on the same server at once. The admin routes
run with an admin key: tenants, keys (shown once), quotas, the audit log.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from async_support import wait_until
from helpers import create_key, create_tenant, faas_admin, open_data_dir, running_server

pytestmark = pytest.mark.sandbox

SERVE_ENV = {"FAAS_EXECUTORS": "sandbox", "FAAS_DEFAULT_EXECUTOR": "sandbox"}
KEY = re.compile(r"faas_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
#: The server keeps found keys this long; a key revoked elsewhere must stop by then (+ slack).
REVOKED_WITHIN_S = 3.0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with open_data_dir() as data:
        yield data


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def key_id(key: str) -> str:
    found = KEY.fullmatch(key)
    assert found, key
    return found.group(1)


def other_key(key: str) -> str:
    """``key`` with one character of its secret changed (still a well-formed key)."""
    i = len(key) - 10
    return key[:i] + ("B" if key[i] == "A" else "A") + key[i + 1:]



def assert_one_line_error(done: subprocess.CompletedProcess[str], *wanted: str) -> None:
    assert done.returncode == 2, done
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for text in wanted:
        assert text in done.stderr, done.stderr


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"].startswith("application/json")
    assert "API key" in response.json()["error"]


def test_create_key_writes_a_private_file_and_prints_the_key_only_without_out(
        data_dir: Path, tmp_path: Path) -> None:
    made = faas_admin(data_dir, "create-tenant", "acme")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["name"] == "acme"

    out = tmp_path / "acme.key"
    done = faas_admin(data_dir, "create-key", "--tenant", "acme", "--role", "developer",
                      "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    key = out.read_text().strip()
    assert KEY.fullmatch(key), key
    assert key not in done.stdout and key not in done.stderr
    assert key_id(key) in done.stderr  # says which key it wrote

    printed = faas_admin(data_dir, "create-key", "--tenant", "acme", "--role", "invoker")
    assert printed.returncode == 0, printed.stderr
    other = printed.stdout.strip()
    assert KEY.fullmatch(other) and printed.stdout == other + "\n", printed.stdout
    assert other not in printed.stderr and other != key

    # --out onto an existing file: refused in one line, and no key was made for nobody.
    again = faas_admin(data_dir, "create-key", "--tenant", "acme", "--role", "admin",
                       "--out", str(out))
    assert_one_line_error(again, "--out")
    assert out.read_text().strip() == key

    listed = faas_admin(data_dir, "list-keys")
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert sorted((k["id"], k["role"], k["tenant"]) for k in items) == sorted(
        [(key_id(key), "developer", "acme"), (key_id(other), "invoker", "acme")])
    for secret in (key, other):
        assert secret not in listed.stdout
        assert secret.rsplit("_", 1)[1] not in listed.stdout
        assert hashlib.sha256(secret.encode()).hexdigest() not in listed.stdout
    assert all("hash" not in field for item in items for field in item), items


@pytest.mark.parametrize("argv, wanted", [
    (["create-tenant", "Bad_Name"], "tenant name"),
    (["create-tenant", "x" * 33], "tenant name"),
    (["create-key", "--tenant", "default", "--role", "boss"], "role"),
    (["create-key", "--tenant", "Not/A/Tenant", "--role", "admin"], "tenant name"),
    (["create-key", "--tenant", "nope", "--role", "admin"], "no tenant 'nope'"),
    (["revoke-key", "zz"], "key id"),
    (["revoke-key", "0123456789ab"], "no key"),
    (["set-quotas", "default", "--quota", "max_concurrency=0"], "max_concurrency"),
], ids=["tenant-case", "tenant-long", "role", "key-tenant-name", "key-unknown-tenant",
        "revoke-bad-id", "revoke-unknown", "quota-range"])
def test_bad_arguments_are_one_line_and_status_2(data_dir: Path, argv: list[str],
                                                 wanted: str) -> None:
    assert_one_line_error(faas_admin(data_dir, *argv), wanted)
    if argv[0] == "create-key":
        assert json.loads(faas_admin(data_dir, "list-keys").stdout) == []


def test_a_cli_key_on_a_real_server_and_its_revocation_on_the_store(
        bwrap_available: None, data_dir: Path, tmp_path: Path, database_url: str) -> None:
    """On SQLite in the data folder, and on PostgreSQL (``FAAS_DATABASE_URL``)."""
    store = {"FAAS_DATABASE_URL": database_url} if database_url else {}
    create_tenant(data_dir, "acme", env=store)
    key = create_key(data_dir, tenant="acme", role="developer", env=store)
    with running_server(tmp_path, {**SERVE_ENV, **store}, data_dir=data_dir) as srv, \
            srv.client() as c:
        assert_refused(c.get("/whoami"))
        assert_refused(c.get("/functions"))
        assert_refused(c.get("/whoami", headers=bearer(other_key(key))))
        assert c.get("/whoami", headers=bearer(key)).json() == {
            "tenant": "acme", "role": "developer", "key_id": key_id(key)}
        assert c.get("/functions", headers=bearer(key)).status_code == 200
        assert c.get("/keys", headers=bearer(key)).status_code == 403  # not an admin

        revoked = faas_admin(data_dir, "revoke-key", key_id(key), env=store)
        assert revoked.returncode == 0, revoked.stderr
        assert json.loads(revoked.stdout)["revoked_at"]
        took = wait_until(lambda: c.get("/whoami", headers=bearer(key)).status_code == 401,
                          REVOKED_WITHIN_S)
        print(f"revoked on the store: refused after {took:.2f} s")
        assert_refused(c.get("/functions", headers=bearer(key)))
    assert key not in srv.log()


def test_admin_routes_with_an_admin_key(bwrap_available: None, data_dir: Path,
                                        tmp_path: Path) -> None:
    admin_key = create_key(data_dir)
    admin = bearer(admin_key)
    with running_server(tmp_path, SERVE_ENV, data_dir=data_dir) as srv, \
            srv.client(timeout=30) as c:
        made = c.post("/tenants", json={"name": "beta"}, headers=admin)
        assert made.status_code == 201, made.text
        assert made.json()["name"] == "beta"
        assert c.post("/tenants", json={"name": "beta"}, headers=admin).status_code == 409
        assert c.post("/tenants", json={"name": "Beta!"}, headers=admin).status_code == 400

        issued = c.post("/keys", json={"tenant": "beta", "role": "invoker", "name": "ci"},
                        headers=admin)
        assert issued.status_code == 201, issued.text
        assert issued.headers["cache-control"] == "no-store"
        key = issued.json()["key"]
        assert KEY.fullmatch(key) and issued.json()["id"] == key_id(key)
        assert c.post("/keys", json={"tenant": "nope", "role": "invoker"},
                      headers=admin).status_code == 404
        assert c.post("/keys", json={"tenant": "beta", "role": "root"},
                      headers=admin).status_code == 400

        listed = c.get("/keys", headers=admin)
        assert listed.status_code == 200
        assert all("key" not in item for item in listed.json()["items"]), listed.text
        assert key not in listed.text and admin_key not in listed.text
        assert hashlib.sha256(key.encode()).hexdigest() not in listed.text

        viewer = c.post("/keys", json={"tenant": "beta", "role": "developer"}, headers=admin)
        assert c.get("/tenants", headers=bearer(viewer.json()["key"])).status_code == 403
        # The key's first use (so it is cached from now for 1 s), right before its revocation:
        assert c.get("/whoami", headers=bearer(key)).json()["tenant"] == "beta"
        gone = c.delete(f"/keys/{key_id(key)}", headers=admin)
        assert gone.status_code == 200, gone.text
        assert gone.json()["revoked_at"] and "key" not in gone.json()
        # Revoked on this server: refused at once, cached or not.
        assert_refused(c.get("/whoami", headers=bearer(key)))
        twice = c.delete(f"/keys/{key_id(key)}", headers=admin)  # idempotent: one revocation
        assert twice.status_code == 200 and twice.json() == gone.json(), twice.text

        for quotas in ({"max_concurrency": 0}, {"nope": 1}, {"max_vcpus": 1.5},
                       {"rate_per_s": "fast"}, {"burst": True}):
            bad = c.put("/tenants/beta/quotas", json={"quotas": quotas}, headers=admin)
            assert bad.status_code == 400, (quotas, bad.text)
        assert c.put("/tenants/beta/quotas", json={"quotas": [1]},
                     headers=admin).status_code == 400
        # 2.0 is an integer in JSON (what many encoders write), 1.5 is not
        good = c.put("/tenants/beta/quotas", json={"quotas": {"max_concurrency": 2.0}},
                     headers=admin)
        assert good.status_code == 200, good.text
        detail = c.get("/tenants/beta", headers=admin).json()
        assert detail["quotas"] == {"max_concurrency": 2}
        assert detail["effective_quotas"]["max_concurrency"] == 2

        audit = c.get("/audit", headers=admin)
        assert audit.status_code == 200, audit.text
        entries = [(e["action"], e["actor"], e["target"]) for e in audit.json()["items"]]
        assert key not in audit.text and admin_key not in audit.text
    by_admin = {(action, target) for action, actor, target in entries
                if actor == key_id(admin_key)}
    assert {("tenant.create", "beta"), ("key.create", key_id(key)),
            ("key.revoke", key_id(key))} <= by_admin, entries
    assert [e for e in entries if e[0] == "key.revoke"] == [
        ("key.revoke", key_id(admin_key), key_id(key))]
    # the CLI made the admin key: no key acted
    assert ("key.create", None, key_id(admin_key)) in entries, entries
    assert key not in srv.log() and admin_key not in srv.log()

