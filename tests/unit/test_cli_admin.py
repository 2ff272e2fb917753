"""``faas admin rotate-secret-key`` on a real SQLite store, as an operator runs it."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from faas.cli import main
from faas.config import Settings
from faas.secrets.cipher import KEY_FILE, MasterKey
from faas.secrets.service import Secrets
from faas.store import open_store
from faas.tenancy.principal import OPEN


def put_and_read(settings: Settings, value: bytes | None) -> tuple[str, bytes]:
    async def work() -> tuple[str, bytes]:
        store = await open_store(None, settings.data_dir)
        try:
            vault = await Secrets.open(settings, store)
            if value is not None:
                await vault.put(OPEN, "s", value)
            ((_, got),) = await vault.for_call(OPEN.tenant, ["s"])
            return vault.key_id, got
        finally:
            await store.close()
    return asyncio.run(work())


def test_rotation_with_the_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FAAS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("FAAS_SECRET_KEY", raising=False)
    settings = Settings.from_env()
    old_id, _ = put_and_read(settings, b"v1")
    assert main(["admin", "rotate-secret-key"]) == 0
    out = capsys.readouterr().out
    new_id, value = put_and_read(settings, None)
    assert value == b"v1" and new_id != old_id
    assert f"re-encrypted 1 secrets: master key {old_id} -> {new_id}" in out
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_rotation_with_the_environment_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    monkeypatch.setenv("FAAS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FAAS_SECRET_KEY", old.to_base64())
    put_and_read(Settings.from_env(), b"v1")
    assert main(["admin", "rotate-secret-key"]) == 2
    assert "--new-key-file" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.write_text("c2VjcmV0\n")
    assert main(["admin", "rotate-secret-key", "--new-key-file", str(bad)]) == 2
    assert "c2VjcmV0" not in capsys.readouterr().err
    key_file = tmp_path / "new.key"
    key_file.write_text(new.to_base64() + "\n")
    key_file.chmod(0o600)
    assert main(["admin", "rotate-secret-key", "--new-key-file", str(key_file)]) == 0
    out = capsys.readouterr().out
    assert "set FAAS_SECRET_KEY" in out and new.to_base64() not in out
    assert not (tmp_path / KEY_FILE).exists()
    monkeypatch.setenv("FAAS_SECRET_KEY", base64.b64encode(new.raw()).decode())
    assert put_and_read(Settings.from_env(), None) == (new.key_id, b"v1")
