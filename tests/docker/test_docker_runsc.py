"""The optional gVisor runtime (``runsc``) behind the same executor, where dockerd has it.

``scripts/ensure-dockerd.sh`` registers ``runsc`` when the Debian package is
installed; these tests skip (with the reason) only when it is not registered.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from docker_support import make_spec

from faas.executors.docker import DockerExecutor, availability

pytestmark = pytest.mark.docker


@pytest.fixture
async def gvisor(docker_image: str) -> AsyncIterator[DockerExecutor]:
    probe = await availability(runtime="runsc")
    if not probe.usable:
        pytest.skip(f"gVisor is not registered with dockerd: {probe.reason}")
    ex = DockerExecutor(default_image=docker_image, runtime="runsc")
    try:
        yield ex
    finally:
        await ex.aclose()


async def test_runs_under_gvisor_kernel(gvisor: DockerExecutor) -> None:
    payload = os.urandom(100_000)
    result = await gvisor.run(make_spec(["sh", "-c", "cat; dmesg | head -1 >&2"], payload=payload))
    assert result.exit_code == 0, result
    assert result.stdout == payload
    assert b"gVisor" in result.stderr


async def test_gvisor_has_no_network_and_no_privilege(gvisor: DockerExecutor) -> None:
    result = await gvisor.run(make_spec([
        "python3", "-c",
        "import os, socket; print(os.getuid(), [n for _, n in socket.if_nameindex()])",
    ]))
    assert result.stdout == b"65534 ['lo']\n", result


async def test_gvisor_timeout(gvisor: DockerExecutor) -> None:
    result = await gvisor.run(make_spec(["sh", "-c", "echo up; sleep 60"], timeout_s=3))
    assert result.timed_out and result.stdout == b"up\n"
