"""A call's secrets in a container: files at /run/secrets, nowhere else, gone after.

The executor writes each value into a per-call folder on a host tmpfs, owned
by the container's user, and binds it read-only (``secret_files``). These
tests read it back from inside, scan the host's processes while a call holds
a secret, and check the folder is gone after every way a call can end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
from docker_support import make_spec

from faas import instance
from faas.executors.docker import DockerExecutor
from faas.executors.docker.secret_files import filesystem_type
from faas.models import ExecutionSpec
from secrets_support import INSIDE, SECRETS, check_inside, host_processes_holding

pytestmark = pytest.mark.docker


def with_secrets(spec: ExecutionSpec) -> ExecutionSpec:
    return dataclasses.replace(spec, secrets=SECRETS)


def our_folders(executor: DockerExecutor) -> list[Path]:
    root = executor.secret_folders.root
    if not root.exists():
        return []
    return [p for p in root.iterdir() if p.name.startswith(instance.instance_id() + "-")]


def host_has(marker: str) -> bool:
    """Whether a host process runs with ``marker`` (words joined by spaces) as arguments."""
    wanted = marker.replace(" ", "\0").encode()
    for entry in Path("/proc").iterdir():
        try:
            if wanted in (entry / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


async def test_secrets_are_read_only_files_of_the_containers_user_on_a_tmpfs(
        executor: DockerExecutor) -> None:
    result = await executor.run(with_secrets(make_spec(["sh", "-c", INSIDE])))
    check_inside(result)
    assert result.stdout.decode().splitlines()[2] == "65534"
    assert our_folders(executor) == []
    assert filesystem_type(executor.secret_folders.root) == "tmpfs"


async def test_a_call_without_secrets_mounts_nothing_and_makes_no_folder(
        executor: DockerExecutor) -> None:
    spec = make_spec(["sh", "-c", "test -e /run/secrets && echo there; "
                      "grep -c secrets /proc/self/mounts"])
    assert "Mounts" not in executor._create_body(spec, "image")["HostConfig"]
    result = await executor.run(spec)
    assert result.stdout == b"0\n", result
    assert our_folders(executor) == []


async def test_no_host_process_shows_a_secret_and_the_folder_goes_with_the_call(
        executor: DockerExecutor) -> None:
    marker = "sleep 7.4322"
    call = asyncio.create_task(executor.run(with_secrets(make_spec(
        ["sh", "-c", f"cat /run/secrets/db; exec {marker}"], timeout_s=60))))
    until = time.monotonic() + 30
    while not host_has(marker):
        assert time.monotonic() < until and not call.done(), "the call never started"
        await asyncio.sleep(0.05)
    try:
        folders = our_folders(executor)
        assert len(folders) == 1 and folders[0].stat().st_mode & 0o777 == 0o500
        for secret in SECRETS:
            assert host_processes_holding(secret.value) == []
    finally:
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
    assert our_folders(executor) == []


async def test_the_folder_is_gone_after_a_timeout_and_a_failed_start(
        executor: DockerExecutor) -> None:
    timed_out = await executor.run(with_secrets(make_spec(["sleep", "30"], timeout_s=2)))
    assert timed_out.timed_out, timed_out
    assert our_folders(executor) == []
    missing = await executor.run(with_secrets(make_spec(["/no/such/command"])))
    assert missing.exit_code == 127, missing
    assert our_folders(executor) == []


async def test_the_folders_of_a_dead_server_are_swept_at_start_and_a_live_ones_kept(
        executor: DockerExecutor) -> None:
    root = executor.secret_folders.root
    root.mkdir(0o700, exist_ok=True)
    dead, live = root / "999999999x1-5ecre7", root / f"{instance.instance_id()}-5ecre7"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "db").write_bytes(b"left behind")
    try:
        await executor.sweep_dead_instances()
        assert not dead.exists() and live.exists()
    finally:
        executor.secret_folders.remove(dead)
        executor.secret_folders.remove(live)
