"""The master key: where it comes from, how it is kept, and what a sealed value is bound to."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from faas.config import Settings, TenancySettings
from faas.errors import StoreUnavailable, ValidationError
from faas.secrets.cipher import (
    KEY_FILE,
    NEW_KEY_FILE,
    MasterKey,
    Sealed,
    SecretUnreadable,
    key_id_of,
)


def settings(data_dir: Path, secret_key: str = "") -> Settings:
    return Settings(data_dir=data_dir, tenancy=TenancySettings(secret_key=secret_key))


def test_a_value_round_trips_and_is_bound_to_its_tenant_and_name() -> None:
    key = MasterKey.generate()
    sealed = key.seal("acme", "db", b"hunter2")
    assert b"hunter2" not in sealed.ciphertext and len(sealed.nonce) == 12
    assert sealed.key_id == key.key_id and len(key.key_id) == 16
    assert key.open("acme", "db", sealed) == b"hunter2"
    for tenant, name in (("beta", "db"), ("acme", "db2"), ("acme\x00d", "b"), ("acm", "e\x00db")):
        with pytest.raises(SecretUnreadable, match="altered or moved"):
            key.open(tenant, name, sealed)
    flipped = Sealed(bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:], sealed.nonce,
                     sealed.key_id)
    with pytest.raises(SecretUnreadable):
        key.open("acme", "db", flipped)
    assert key.seal("acme", "db", b"hunter2").nonce != sealed.nonce


def test_a_row_of_another_key_is_named_as_such() -> None:
    one, two = MasterKey.generate(), MasterKey.generate()
    sealed = one.seal("acme", "db", b"v")
    with pytest.raises(SecretUnreadable, match=f"sealed under master key {one.key_id}"):
        two.open("acme", "db", sealed)
    # Claiming the other key's id does not make it open either.
    with pytest.raises(SecretUnreadable, match="altered or moved"):
        two.open("acme", "db", Sealed(sealed.ciphertext, sealed.nonce, two.key_id))


def test_the_key_never_shows() -> None:
    raw = os.urandom(32)
    key = MasterKey(raw)
    assert raw.hex() not in repr(key) and base64.b64encode(raw).decode() not in repr(key)
    assert key.key_id == key_id_of(raw) and key.key_id not in raw.hex()


def test_the_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = MasterKey.load(settings(data))
    info = (data / KEY_FILE).lstat()
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert (data / KEY_FILE).read_bytes() == key.raw()
    assert MasterKey.load(settings(data)).key_id == key.key_id
    assert sorted(p.name for p in data.iterdir()) == [KEY_FILE]


def test_the_key_file_is_private_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        MasterKey.load(settings(tmp_path))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_others_could_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / KEY_FILE
    path.write_bytes(os.urandom(32))
    path.chmod(mode)
    with pytest.raises(StoreUnavailable, match="group or others") as caught:
        MasterKey.load(settings(tmp_path))
    assert str(tmp_path) not in str(caught.value)


def test_a_key_file_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file away")
    path = tmp_path / KEY_FILE
    path.write_bytes(os.urandom(32))
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(StoreUnavailable, match="not owned"):
        MasterKey.load(settings(tmp_path))


def test_a_symlinked_or_short_key_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(os.urandom(32))
    target.chmod(0o600)
    data = tmp_path / "data"
    data.mkdir()
    (data / KEY_FILE).symlink_to(target)
    with pytest.raises(StoreUnavailable, match="symbolic link"):
        MasterKey.load(settings(data))
    (data / KEY_FILE).unlink()
    (data / KEY_FILE).write_bytes(b"x" * 31)
    (data / KEY_FILE).chmod(0o600)
    with pytest.raises(StoreUnavailable, match="exactly 32 bytes"):
        MasterKey.load(settings(data))


def test_the_environment_key_wins_and_no_file_is_made(tmp_path: Path) -> None:
    raw = os.urandom(32)
    key = MasterKey.load(settings(tmp_path, base64.b64encode(raw).decode()))
    assert key.raw() == raw and not (tmp_path / KEY_FILE).exists()


@pytest.mark.parametrize("bad", [
    "c2VjcmV0",                                      # base64, but 6 bytes
    base64.b64encode(b"k" * 31).decode(),
    base64.b64encode(b"k" * 33).decode(),
    "not base64 at all, this is a passphrase!!!!",
    base64.b64encode(b"k" * 32).decode()[:-2] + "*=",
])
def test_a_bad_environment_key_is_refused_without_echo(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValidationError, match="FAAS_SECRET_KEY") as caught:
        MasterKey.load(settings(tmp_path, bad))
    assert bad not in str(caught.value) and bad[:8] not in str(caught.value)


def test_a_pending_key_is_kept_only_if_the_rows_use_it(tmp_path: Path) -> None:
    old = MasterKey.load(settings(tmp_path))
    new = MasterKey.generate()
    pending = tmp_path / NEW_KEY_FILE
    pending.write_bytes(new.raw())
    pending.chmod(0o600)
    assert MasterKey.load(settings(tmp_path), {old.key_id}).key_id == old.key_id
    assert not pending.exists()
    pending.write_bytes(new.raw())
    pending.chmod(0o600)
    assert MasterKey.load(settings(tmp_path), {new.key_id}).key_id == new.key_id
    assert not pending.exists() and (tmp_path / KEY_FILE).read_bytes() == new.raw()
