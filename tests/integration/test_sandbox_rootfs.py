"""The namespace sandbox on a dedicated root tree (FAAS_SANDBOX_ROOTFS) instead of host /usr."""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Server, assert_no_leaks, running_server

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def rootfs_server(bwrap_available: None,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from faas.images.common import ImageBuildError
    from faas.images.rootfs import ensure_rootfs_tar

    try:
        tar_path = ensure_rootfs_tar()
    except ImageBuildError as exc:
        pytest.skip(f"cannot build the guest rootfs here: {exc}")
    # The tree must be reachable by the sandbox's unprivileged host uids (pytest's own
    # temp folders are 0700 root).
    root = Path(tempfile.mkdtemp(prefix="faas-test-sandbox-root-", dir="/var/tmp"))
    root.chmod(0o755)
    with tarfile.open(tar_path) as tar:
        tar.extractall(root, filter="fully_trusted")  # noqa: S202 - our own build
    marker = root / "etc" / "faas-sandbox-root"
    marker.write_text("dedicated\n")
    env = {"FAAS_SANDBOX_ROOTFS": str(root), "FAAS_EXECUTORS": "sandbox"}
    try:
        with running_server(tmp_path_factory.mktemp("rootfs-server"), env) as srv:
            yield srv
        assert_no_leaks()
    finally:
        shutil.rmtree(root)


def test_commands_see_the_dedicated_tree_read_only(rootfs_server: Server) -> None:
    r = rootfs_server.invoke(["sh", "-c", "cat /etc/faas-sandbox-root; python3 -c 'print(6*7)'; "
                                          "touch /usr/x 2>&1; ls /opt/faas"])
    body = r.json()
    assert r.status_code == 200, body
    lines = body["stdout"].splitlines()
    assert lines[0] == "dedicated" and lines[1] == "42"
    assert "Read-only file system" in lines[2]
    assert lines[3] == "faas"  # the guest rootfs, not the host's /usr


def test_a_rootfs_that_is_not_a_tree_is_refused(tmp_path: Path, bwrap_available: None) -> None:
    env = {"FAAS_SANDBOX_ROOTFS": str(tmp_path), "FAAS_EXECUTORS": "sandbox"}
    proc = subprocess.run([sys.executable, "-m", "faas.cli", "serve", "--port", "1"],
                          env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "not a root filesystem tree" in proc.stderr
