"""The docker tier's per-call secrets folders, on the host side (no daemon needed)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from faas import instance
from faas.errors import SandboxError
from faas.executors.docker.secret_files import (
    SecretFolders,
    filesystem_type,
    numeric_user,
    secrets_mount,
)
from faas.secrets.values import Secret

SECRETS = (Secret("db", b"db-value"), Secret("api_key", b"k" * 5000))


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(f"/dev/shm/faas-secrets-test-{os.getpid()}")
    if filesystem_type(path.parent) != "tmpfs":
        pytest.skip("/dev/shm is not a tmpfs here")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_each_secret_is_a_0400_file_of_the_container_user_in_a_0500_folder(root: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving files to another uid needs root")
    folder = SecretFolders(root).make(SECRETS, 65534, 65533)
    assert folder.parent == root and folder.name.startswith(instance.instance_id() + "-")
    assert (root.stat().st_mode & 0o777, root.stat().st_uid) == (0o700, 0)
    info = folder.stat()
    assert (info.st_mode & 0o777, info.st_uid, info.st_gid) == (0o500, 65534, 65533)
    for secret in SECRETS:
        info = (folder / secret.name).stat()
        assert (info.st_mode & 0o777, info.st_uid, info.st_gid) == (0o400, 65534, 65533)
        assert (folder / secret.name).read_bytes() == secret.value
    SecretFolders(root).remove(folder)
    assert not folder.exists()
    assert secrets_mount(folder)["ReadOnly"] is True
    assert secrets_mount(folder)["Target"] == "/run/secrets"


def test_a_root_on_a_disk_is_refused(tmp_path: Path) -> None:
    if filesystem_type(tmp_path) == "tmpfs":
        pytest.skip("the test's temporary folder is a tmpfs here")
    with pytest.raises(SandboxError, match="not on a tmpfs"):
        SecretFolders(tmp_path / "secrets").make(SECRETS, 65534, 65534)
    assert list((tmp_path / "secrets").iterdir()) == []


def test_a_root_someone_else_placed_is_never_followed(root: Path, tmp_path: Path) -> None:
    root.symlink_to(tmp_path)
    with pytest.raises(SandboxError, match="not a 0700 folder of this server's own"):
        SecretFolders(root).make(SECRETS, 65534, 65534)
    root.unlink()
    root.mkdir(0o777)
    root.chmod(0o777)
    with pytest.raises(SandboxError, match="not a 0700 folder"):
        SecretFolders(root).make(SECRETS, 65534, 65534)
    assert list(tmp_path.iterdir()) == [] and list(root.iterdir()) == []


def test_the_sweep_removes_only_the_folders_of_dead_servers(root: Path) -> None:
    root.mkdir(0o700)
    dead, live, odd = (root / "999999999x1-abcd", root / f"{instance.instance_id()}-ef01",
                       root / "no-owner-here")
    for folder in (dead, live, odd):
        folder.mkdir()
        (folder / "db").write_bytes(b"v")
    assert SecretFolders(root).sweep_dead() == 1
    assert not dead.exists() and live.exists() and odd.exists()
    assert SecretFolders(root / "missing").sweep_dead() == 0


def test_numeric_user() -> None:
    assert numeric_user("65534:65534") == (65534, 65534)
    assert numeric_user("1000") == (1000, 1000)
    assert numeric_user("nobody") is None and numeric_user("1:staff") is None
