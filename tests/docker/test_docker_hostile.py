"""Hostile callers against the Docker executor (issue 8): the platform must answer every time."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from docker_support import make_spec
from engine_http import Daemon

from faas import instance
from faas.errors import FaasError
from faas.executors.docker import INSTANCE_LABEL, MANAGED_LABEL, REQUEST_LABEL, DockerExecutor

pytestmark = pytest.mark.docker

HERE = Path(__file__).resolve().parent

# Run in a child whose SIGPIPE has its default action (as a CLI may leave it): a
# write that meets the closed stream must not kill the process.
UNREAD_STDIN = """
import asyncio, signal, sys
sys.path.insert(0, sys.argv[2])
from docker_support import make_spec
from faas.executors.docker import DockerExecutor

async def main() -> None:
    ex = DockerExecutor(default_image=sys.argv[1])
    try:
        for round_ in range(10):
            for size in (0, 70_000, 6 << 20):
                for command in (["head", "-c", "1"], ["true"]):
                    r = await ex.run(make_spec(command, payload=b"x" * size, timeout_s=60))
                    want = b"x" if command[0] == "head" and size else b""
                    ok = (r.exit_code, r.error, r.timed_out, r.stdout) == (0, None, False, want)
                    assert ok, (round_, size, command, r)
        print("all ordinary results")
    finally:
        await ex.aclose()

signal.signal(signal.SIGPIPE, signal.SIG_DFL)
asyncio.run(main())
"""


def test_unread_stdin_is_dropped_every_time(docker_image: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", UNREAD_STDIN, docker_image, str(HERE)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() == "all ordinary results"


async def test_sweep_removes_only_dead_instances_containers(
    executor: DockerExecutor, docker_daemon: Daemon, docker_image: str
) -> None:
    dead_id, live_id = "1x1", instance.instance_id()
    assert not instance.alive(dead_id) and instance.alive(live_id)
    made = {
        owner: docker_daemon.create(
            docker_image, ["true"], labels={MANAGED_LABEL: "1", INSTANCE_LABEL: owner},
        )
        for owner in (dead_id, live_id, "not-an-instance-id")
    }
    try:
        removed = await executor.sweep_dead_instances()
        left = {c.id for c in docker_daemon.containers(INSTANCE_LABEL)}
        assert made[dead_id] not in left
        assert made[live_id] in left and made["not-an-instance-id"] in left
        assert removed >= 1
    finally:
        for container in made.values():
            docker_daemon.remove(container, missing_ok=True)


async def test_containers_carry_the_instance_label(
    executor: DockerExecutor, docker_daemon: Daemon
) -> None:
    task = asyncio.create_task(executor.run(make_spec(["sleep", "30"], request_id="labelled")))
    try:
        for _ in range(100):
            found = docker_daemon.containers(f"{REQUEST_LABEL}=labelled")
            if found:
                break
            await asyncio.sleep(0.1)
        assert found and found[0].labels[INSTANCE_LABEL] == instance.instance_id()
    finally:
        task.cancel()
        await asyncio.wait([task])


async def test_deadline_during_a_slow_start_answers_on_time_and_leaves_nothing(
    docker_image: str, docker_daemon: Daemon
) -> None:
    # runc's environment handling is quadratic: here 40k variables made the start
    # take 6-16 s (10k: 1 s, 30k: 4 s, 60k: 13 s), while create stays under 0.5 s.
    env = {f"V{i}": "x" for i in range(40_000)}
    ex = DockerExecutor(default_image=docker_image)
    try:
        started = time.monotonic()
        result = await ex.run(make_spec(["true"], env=env, timeout_s=2, request_id="slow-start"))
        elapsed = time.monotonic() - started
        assert result.timed_out and result.exit_code is None, result
        assert elapsed < 2 + 2, elapsed
    finally:
        await ex.aclose()  # waits for the removal the daemon held up
    left = docker_daemon.containers(f"{MANAGED_LABEL}=1")
    assert [c.name for c in left] == []


@pytest.mark.parametrize("body", [b"not json", b'{"no": "version"}', b"[1, 2]"])
async def test_a_daemon_answering_garbage_gives_a_faas_error(body: bytes) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ex = DockerExecutor(base_url=f"tcp://127.0.0.1:{port}", default_image="x", api_timeout_s=5)
    try:
        with pytest.raises(FaasError):
            await ex.run(make_spec(["true"], timeout_s=10))
        with pytest.raises(FaasError):
            await ex.sweep_dead_instances()
    finally:
        await ex.aclose()
        server.close()
        await server.wait_closed()


def test_a_bad_base_url_is_a_faas_error() -> None:
    with pytest.raises(FaasError):
        DockerExecutor(base_url="ftp://nowhere")
