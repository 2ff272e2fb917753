"""Secrets at rest on both engines: sealed in the table, opened only for a call, rotated
whole or not at all, and every write audited."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import select, update
from store_backend import Backend, raw

from faas.config import Settings, TenancySettings
from faas.errors import NotFound, ValidationError
from faas.secrets.cipher import KEY_FILE, NEW_KEY_FILE, MasterKey, SecretUnreadable
from faas.secrets.names import MAX_SECRET_BYTES, MAX_SECRETS_PER_FUNCTION
from faas.secrets.rotation import rotate_master_key
from faas.secrets.service import SecretNotFound, Secrets
from faas.store import Store
from faas.store.tables import audit_log, secrets
from faas.tenancy.principal import Principal, Role

ACME = Principal("acme", Role.DEVELOPER, "key-acme")
BETA = Principal("beta", Role.DEVELOPER, "key-beta")
VALUE = b"hunter2-\x00-very-secret-value"


def settings_for(backend: Backend, secret_key: str = "") -> Settings:
    return Settings(data_dir=backend.data_dir,
                    tenancy=TenancySettings(secret_key=secret_key))


@pytest.fixture(autouse=True)
async def tenants(store: Store) -> None:
    for principal in (ACME, BETA):
        await store.tenants.create_tenant(principal.tenant)


async def raw_rows(backend: Backend) -> list[tuple[str, str, bytes, bytes, str]]:
    async with raw(backend) as conn:
        rows = await conn.execute(select(secrets.c.tenant, secrets.c.name, secrets.c.ciphertext,
                                         secrets.c.nonce, secrets.c.key_id)
                                  .order_by(secrets.c.tenant, secrets.c.name))
        return [(r.tenant, r.name, bytes(r.ciphertext), bytes(r.nonce), r.key_id)
                for r in rows]


async def test_values_are_sealed_in_the_table_and_open_for_a_call(
        store: Store, backend: Backend) -> None:
    vault = await Secrets.open(settings_for(backend), store)
    meta, created = await vault.put(ACME, "db-password", VALUE)
    assert created and meta.name == "db-password" and meta.size == len(VALUE)
    again, created = await vault.put(ACME, "db-password", VALUE + b"!")
    assert not created and again.created_at == meta.created_at
    assert again.updated_at >= meta.updated_at and again.size == len(VALUE) + 1
    await vault.put(ACME, "token", b"t0k3n")

    for tenant, _, ciphertext, nonce, key_id in await raw_rows(backend):
        assert tenant == "acme" and len(nonce) == 12 and key_id == vault.key_id
        assert b"hunter2" not in ciphertext and b"t0k3n" not in ciphertext
    assert await vault.for_call("acme", ["token", "db-password"]) == (
        ("token", b"t0k3n"), ("db-password", VALUE + b"!"))
    assert [m.name for m in await vault.list(ACME)] == ["db-password", "token"]
    assert (await vault.meta(ACME, "token")).size == 5


async def test_nonces_are_fresh_for_every_put(store: Store, backend: Backend) -> None:
    vault = await Secrets.open(settings_for(backend), store)
    seen = set()
    for _ in range(5):
        await vault.put(ACME, "same", VALUE)
        (_, _, ciphertext, nonce, _), = await raw_rows(backend)
        seen.add((nonce, ciphertext))
    assert len(seen) == 5


async def test_tenants_do_not_see_each_others_secrets(store: Store, backend: Backend) -> None:
    vault = await Secrets.open(settings_for(backend), store)
    await vault.put(ACME, "shared-name", b"acme's")
    with pytest.raises(NotFound):
        await vault.meta(BETA, "shared-name")
    with pytest.raises(NotFound):
        await vault.delete(BETA, "shared-name")
    assert await vault.list(BETA) == ()
    with pytest.raises(SecretNotFound, match="'shared-name'") as caught:
        await vault.for_call("beta", ["shared-name"])
    assert "acme's" not in str(caught.value)
    assert await vault.for_call("acme", ["shared-name"]) == (("shared-name", b"acme's"),)


async def test_a_ciphertext_moved_to_another_row_or_tenant_does_not_open(
        store: Store, backend: Backend) -> None:
    vault = await Secrets.open(settings_for(backend), store)
    await vault.put(ACME, "a", b"value of a")
    await vault.put(ACME, "b", b"value of b")
    await vault.put(BETA, "a", b"beta's a")
    rows = {(t, n): (c, nonce) for t, n, c, nonce, _ in await raw_rows(backend)}
    async with raw(backend) as conn:
        for (tenant, name), source in ((("acme", "b"), ("acme", "a")),
                                       (("beta", "a"), ("acme", "a"))):
            ciphertext, nonce = rows[source]
            await conn.execute(update(secrets).where(
                secrets.c.tenant == tenant, secrets.c.name == name).values(
                ciphertext=ciphertext, nonce=nonce))
    for tenant, name in (("acme", "b"), ("beta", "a")):
        with pytest.raises(SecretUnreadable, match="altered or moved") as caught:
            await vault.for_call(tenant, [name])
        assert "value of" not in str(caught.value)
    assert await vault.for_call("acme", ["a"]) == (("a", b"value of a"),)


async def test_names_sizes_and_counts_are_bounded(store: Store, backend: Backend) -> None:
    vault = await Secrets.open(settings_for(backend), store)
    for bad in ("", ".hidden", "a/b", "x" * 65, "-lead", "sp ace"):
        with pytest.raises(ValidationError):
            await vault.put(ACME, bad, b"v")
    with pytest.raises(ValidationError, match=str(MAX_SECRET_BYTES)):
        await vault.put(ACME, "big", b"x" * (MAX_SECRET_BYTES + 1))
    meta, _ = await vault.put(ACME, "big", b"x" * MAX_SECRET_BYTES)
    assert meta.size == MAX_SECRET_BYTES
    with pytest.raises(ValidationError):
        await vault.for_call("acme", ["big"] * (MAX_SECRETS_PER_FUNCTION + 1))
    assert await vault.for_call("acme", []) == ()


async def test_writes_are_audited_with_the_key_that_made_them(
        store: Store, backend: Backend) -> None:
    vault = await Secrets.open(settings_for(backend), store)
    await vault.put(ACME, "s", VALUE)
    await vault.delete(ACME, "s")
    with pytest.raises(NotFound):
        await vault.delete(ACME, "s")
    page = await store.tenants.list_audit(tenant="acme")
    assert [(e.action, e.actor, e.target) for e in page.items
            if e.action.startswith("secret.")] == [
        ("secret.delete", "key-acme", "s"), ("secret.set", "key-acme", "s")]
    async with raw(backend) as conn:
        details = [r.detail or "" for r in await conn.execute(select(audit_log.c.detail))]
    assert not any("hunter2" in d for d in details)


# -- rotation -------------------------------------------------------------------------------

async def test_rotation_reseals_every_row_and_the_old_key_no_longer_opens(
        store: Store, backend: Backend) -> None:
    settings = settings_for(backend)
    vault = await Secrets.open(settings, store)
    old = MasterKey.load(settings)
    for principal, name in ((ACME, "one"), (ACME, "two"), (BETA, "one")):
        await vault.put(principal, name, f"{principal.tenant}:{name}".encode())
    before = await raw_rows(backend)

    done = await rotate_master_key(settings, store)
    assert (done.old_key_id, done.rows, done.from_env) == (old.key_id, 3, False)
    after = await raw_rows(backend)
    assert {r[4] for r in after} == {done.new_key_id} != {old.key_id}
    assert all(a[2] != b[2] and a[3] != b[3] for a, b in zip(after, before, strict=True))
    assert not (backend.data_dir / NEW_KEY_FILE).exists()
    assert MasterKey.load(settings).key_id == done.new_key_id

    # The running service follows the rotation; a fresh one opens with the new key.
    assert await vault.for_call("beta", ["one"]) == (("one", b"beta:one"),)
    fresh = await Secrets.open(settings, store)
    assert await fresh.for_call("acme", ["two", "one"]) == (
        ("two", b"acme:two"), ("one", b"acme:one"))
    # The old key opens none of the rows any more.
    tenant, name, ciphertext, nonce, _ = after[0]
    from faas.secrets.cipher import Sealed
    with pytest.raises(SecretUnreadable):
        old.open(tenant, name, Sealed(ciphertext, nonce, old.key_id))
    actions = [e.action for e in (await store.tenants.list_audit(tenant="acme")).items]
    assert actions[0] == "secret.rotate"


async def test_a_put_under_a_stale_key_reloads_it(store: Store, backend: Backend) -> None:
    settings = settings_for(backend)
    stale = await Secrets.open(settings, store)
    await stale.put(ACME, "first", b"1")
    done = await rotate_master_key(settings, store)
    await stale.put(ACME, "second", b"2")  # sealed under the old key, refused, redone
    assert {r[4] for r in await raw_rows(backend)} == {done.new_key_id}
    assert await stale.for_call("acme", ["second", "first"]) == (
        ("second", b"2"), ("first", b"1"))


@pytest.mark.parametrize("committed", [False, True])
async def test_a_rotation_cut_short_leaves_a_loadable_state(
        store: Store, backend: Backend, committed: bool) -> None:
    settings = settings_for(backend)
    vault = await Secrets.open(settings, store)
    await vault.put(ACME, "s", VALUE)
    old = MasterKey.load(settings)
    new = MasterKey.generate()
    # Step 1 done: the new key is written; step 2 (the transaction) done or not; no rename.
    from faas.secrets.cipher import write_pending
    from faas.secrets.rotation import resealer
    write_pending(backend.data_dir, new)
    if committed:
        await store.secrets.rotate(resealer(old, new))
    fresh = await Secrets.open(settings, store)
    assert fresh.key_id == (new.key_id if committed else old.key_id)
    assert not (backend.data_dir / NEW_KEY_FILE).exists()
    assert (backend.data_dir / KEY_FILE).read_bytes() == (new if committed else old).raw()
    assert await fresh.for_call("acme", ["s"]) == (("s", VALUE),)


async def test_rotation_with_the_key_in_the_environment(store: Store, backend: Backend) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    settings = settings_for(backend, old.to_base64())
    vault = await Secrets.open(settings, store)
    await vault.put(ACME, "s", VALUE)
    with pytest.raises(ValidationError, match="--new-key-file"):
        await rotate_master_key(settings, store)
    done = await rotate_master_key(settings, store, new)
    assert done.from_env and done.rows == 1
    assert not (backend.data_dir / KEY_FILE).exists()
    # The server still on the old variable says what to do, never a value.
    with pytest.raises(Exception, match="FAAS_SECRET_KEY") as caught:
        await vault.for_call("acme", ["s"])
    assert VALUE.decode(errors="replace") not in str(caught.value)
    moved = await Secrets.open(dataclasses.replace(
        settings, tenancy=TenancySettings(secret_key=new.to_base64())), store)
    assert await moved.for_call("acme", ["s"]) == (("s", VALUE),)


async def test_a_rotation_that_fails_changes_no_row(store: Store, backend: Backend,
                                                    tmp_path: Path) -> None:
    settings = settings_for(backend)
    vault = await Secrets.open(settings, store)
    await vault.put(ACME, "good", b"1")
    await vault.put(ACME, "bad", b"2")
    async with raw(backend) as conn:  # a row no key opens: the rotation must stop whole
        await conn.execute(update(secrets).where(secrets.c.name == "bad").values(
            ciphertext=b"\x00" * 40))
    before = await raw_rows(backend)
    with pytest.raises(SecretUnreadable):
        await rotate_master_key(settings, store)
    assert await raw_rows(backend) == before
    assert MasterKey.load(settings, {vault.key_id}).key_id == vault.key_id


async def test_a_spec_keeps_its_secret_names_and_old_specs_have_none(
        store: Store, backend: Backend) -> None:
    from faas.store import FunctionSpec
    from faas.store.tables import function_versions
    put = await store.put_function("acme/f", FunctionSpec(command=("x",),
                                                          secrets=("db", "token")))
    assert (await store.get_version("acme/f", put.version)).spec.secrets == ("db", "token")
    async with raw(backend) as conn:  # a spec stored before secrets existed
        row = (await conn.execute(select(function_versions.c.spec))).one()
        import orjson
        body = orjson.loads(row.spec)
        del body["secrets"]
        await conn.execute(update(function_versions).values(spec=orjson.dumps(body).decode()))
    assert (await store.get_version("acme/f", put.version)).spec.secrets == ()
    with pytest.raises(ValidationError):
        FunctionSpec(command=("x",), secrets="db")  # type: ignore[arg-type]
