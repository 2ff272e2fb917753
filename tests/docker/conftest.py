"""Fixtures for the Docker tier: a real daemon (started if needed), a local image, leak checks.

The daemon is started by ``scripts/ensure-dockerd.sh`` once per session; the
tests skip, with the script's own reason printed, only when no daemon can be
started. The image is the guest root filesystem
(``faas.images.rootfs.ensure_rootfs_tar``) imported with the Engine API: no
registry is ever contacted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from faas import instance
from faas.executors.docker import INSTANCE_LABEL, MANAGED_LABEL, DockerExecutor
from faas.images.docker_image import DEFAULT_TAG, ensure_docker_image
from faas.images.rootfs import ensure_rootfs_tar

sys.path.insert(0, str(Path(__file__).parents[1]))
from docker_support import CallCheckedExecutor
from engine_http import Daemon

from helpers import record_tier

REPO = Path(__file__).resolve().parents[2]
TIER = "docker (Docker Engine)"


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[Daemon]:
    """A client (plain httpx) of a daemon that answers; starts dockerd when none does."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "ensure-dockerd.sh")], capture_output=True, text=True,
        timeout=180, check=False,
    )
    if proc.returncode != 0:
        reason = f"no Docker daemon could be started: {proc.stderr.strip()[-800:]}"
        record_tier(TIER, f"SKIPPED: {reason}")
        print(reason, file=sys.stderr)
        pytest.skip(reason)
    client = Daemon()
    record_tier(TIER, "ran")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def docker_image(docker_daemon: Daemon) -> str:
    """The guest rootfs imported as a local image; returns its tag."""
    ensure_docker_image(ensure_rootfs_tar(), DEFAULT_TAG)
    return DEFAULT_TAG


def _ours(owner: str) -> bool:
    """Whether the server instance ``owner`` is this test process or one it started.

    Other test runs (a mutation check, a colleague) may share the daemon: their
    containers are theirs to check. A dead owner counts as ours only if it was
    this process (its gateways are checked while they run).
    """
    parsed = instance.parse(owner)
    if parsed is None or owner == instance.instance_id():
        return owner == instance.instance_id()
    pid = parsed[0]
    while pid > 1 and instance.alive(owner):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid == os.getpid():
            return True
    return False


def managed_containers(client: Daemon) -> list[str]:
    """Managed containers (any state) made by this test process or its servers."""
    return [f"{c.name} ({c.status})" for c in client.containers(f"{MANAGED_LABEL}=1")
            if _ours(c.labels.get(INSTANCE_LABEL, ""))]


@pytest.fixture(scope="session")
def volumes_at_start(docker_daemon: Daemon) -> set[str]:
    return docker_daemon.volumes()


@pytest.fixture(autouse=True)
def no_docker_leaks(
    docker_daemon: Daemon, volumes_at_start: set[str]
) -> Iterator[None]:
    """After every test: no container we labelled and no new volume may be left."""
    yield
    leaked = managed_containers(docker_daemon)
    new_volumes = docker_daemon.volumes() - volumes_at_start
    labelled = docker_daemon.volumes(f"{MANAGED_LABEL}=1")
    assert not leaked, f"leaked containers: {leaked}"
    assert not new_volumes and not labelled, f"leaked volumes: {new_volumes} {labelled}"


@pytest.fixture
async def executor(
    docker_image: str, docker_daemon: Daemon
) -> AsyncIterator[DockerExecutor]:
    """An executor whose every call is followed by a check that its container is gone."""
    ex = CallCheckedExecutor(docker_daemon, default_image=docker_image)
    try:
        yield ex
    finally:
        await ex.aclose()
