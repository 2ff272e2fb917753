"""The docker tier shows a deployed function's bundle read-only at /function."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker_support import make_spec

from bundle_support import HOSTILE, amake_bundle, data_folder, expected
from faas.executors.docker import DockerExecutor

pytestmark = pytest.mark.docker

HANDLER = ["python3", "/function/handler.py"]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    folder = data_folder()
    folder.chmod(0o700)  # the daemon resolves the path: a private data folder is fine
    yield folder
    shutil.rmtree(folder)


async def test_bundle_runs_read_only_as_nobody(executor: DockerExecutor, data_dir: Path) -> None:
    bundle = await amake_bundle(data_dir, "dock")
    result = await executor.run(make_spec(HANDLER, payload=b"hi", bundle=bundle))
    assert (result.exit_code, result.stdout.decode()) == (0, expected("dock", "hi")), result
    hostile = await executor.run(make_spec(["sh", "-c", HOSTILE], bundle=bundle))
    assert (hostile.exit_code, hostile.stdout) == (0, b""), hostile
    mounted = await executor.run(make_spec(
        ["sh", "-c", "id -u; grep ' /function ' /proc/self/mounts"], bundle=bundle))
    uid, line = mounted.stdout.decode().splitlines()
    assert uid == "65534" and "ro" in line.split()[3].split(","), mounted
    assert (bundle.path / "handler.py").read_text().startswith("import sys")


async def test_concurrent_calls_each_see_their_own_bundle(executor: DockerExecutor,
                                                          data_dir: Path) -> None:
    one, two = await amake_bundle(data_dir, "one"), await amake_bundle(data_dir, "two")
    first, second = await asyncio.gather(
        executor.run(make_spec(HANDLER, payload=b"a", bundle=one, request_id="one")),
        executor.run(make_spec(HANDLER, payload=b"b", bundle=two, request_id="two")))
    assert first.stdout.decode() == expected("one", "a"), first
    assert second.stdout.decode() == expected("two", "b"), second


async def test_a_call_without_a_bundle_has_nothing_at_function(executor: DockerExecutor) -> None:
    """Nothing mounted, nothing there (the guest image, shared with the microVMs, has an
    empty /function as the VM agent's mount point; other images have none)."""
    result = await executor.run(make_spec(
        ["sh", "-c", "grep ' /function ' /proc/self/mounts; ls -A /function 2>/dev/null; "
         "echo done"]))
    assert result.stdout == b"done\n", result
