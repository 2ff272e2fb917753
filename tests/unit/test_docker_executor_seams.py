"""DockerExecutor.run against a fake daemon: what it does with each answer, no dockerd needed.

The Engine API calls go through ``httpx.MockTransport``; the attach stream
(an HTTP upgrade to a raw stream, which httpx does not hand out) goes to a
small asyncio unix-socket server standing in for the daemon's socket.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from faas.errors import ImageNotFound, SandboxError
from faas.executors.docker import DockerExecutor
from faas.models import ExecutionSpec, Limits

API = "1.44"
Route = Callable[[httpx.Request], Awaitable[httpx.Response]]
MiB = 1024 * 1024


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


class FakeDaemon:
    """Engine API answers by route plus an attach endpoint on a real unix socket.

    By default every call succeeds and the container echoes its stdin to
    stdout (sent back in 7-byte writes, so frames split across reads) and
    says ``bye`` on stderr, then exits 0.
    """

    def __init__(self, sock: Path) -> None:
        self.sock = sock
        self.seen: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.routes: dict[str, Route] = {
            "POST /containers/create": self.created,
            "POST /containers/{}/start": self.reply(204),
            "POST /containers/{}/wait": self.reply(200, {"StatusCode": 0}),
            "POST /containers/{}/kill": self.reply(204),
            "DELETE /containers/{}": self.reply(204),
            "GET /containers/json": self.reply(200, []),
        }
        self.echo = True

    @staticmethod
    def reply(status: int, body: object = None) -> Route:
        async def route(request: httpx.Request) -> httpx.Response:
            return httpx.Response(status, json=body) if body is not None else httpx.Response(
                status)
        return route

    async def created(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return httpx.Response(201, json={"Id": "x", "Warnings": None})

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/version":
            return httpx.Response(200, json={"ApiVersion": API})
        parts = path.removeprefix(f"/v{API}").split("/")
        if len(parts) > 2 and parts[1] == "containers" and parts[2] not in ("create", "json"):
            parts[2] = "{}"
        key = f"{request.method} {'/'.join(parts)}"
        self.seen.append(key)
        return await self.routes[key](request)

    async def attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(f"POST /v{API}/containers/faas-".encode()), head
        writer.write(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        stdin = await reader.read()  # until the executor half-closes
        if self.echo:
            wire = frame(1, stdin) + frame(2, b"bye")
            for i in range(0, len(wire), 7):
                writer.write(wire[i : i + 7])
                await writer.drain()
        writer.close()


@pytest.fixture
async def daemon() -> AsyncIterator[FakeDaemon]:
    folder = Path(tempfile.mkdtemp(prefix="dkfake-"))  # short: unix socket paths are capped
    fake = FakeDaemon(folder / "docker.sock")
    server = await asyncio.start_unix_server(fake.attach, path=str(fake.sock))
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()
        shutil.rmtree(folder)


def executor(daemon: FakeDaemon) -> DockerExecutor:
    return DockerExecutor(base_url=f"unix://{daemon.sock}", default_image="img",
                          transport=httpx.MockTransport(daemon))


def spec(command: list[str], payload: bytes = b"", timeout_s: float = 10.0,
         **limits: int) -> ExecutionSpec:
    return ExecutionSpec(request_id="r1", function_id="f1", command=tuple(command), env={},
                         payload=payload, deadline=asyncio.get_running_loop().time() + timeout_s,
                         limits=Limits(**limits))


async def test_payload_in_output_out_and_the_container_removed(daemon: FakeDaemon) -> None:
    ex = executor(daemon)
    payload = bytes(range(256)) * 2000  # larger than a socket buffer: stdin waits to drain
    result = await ex.run(spec(["cat"], payload))
    await ex.aclose()
    assert (result.exit_code, result.error) == (0, None)
    assert result.stdout == payload and result.stderr == b"bye"
    assert daemon.seen == ["POST /containers/create", "POST /containers/{}/start",
                           "POST /containers/{}/wait", "DELETE /containers/{}"]
    body = daemon.bodies[0]
    assert body["Image"] == "img" and body["Cmd"] == ["cat"]
    assert body["Labels"]["faas.owner"] == ex.owner


async def test_output_over_the_limit_is_capped_and_flagged(daemon: FakeDaemon) -> None:
    ex = executor(daemon)
    result = await ex.run(spec(["cat"], b"0123456789" * 10, output_bytes=25))
    await ex.aclose()
    assert result.stdout == b"0123456789" * 2 + b"01234" and result.stdout_truncated
    assert result.stderr == b"bye" and not result.stderr_truncated


async def test_command_not_found_is_a_result_and_the_container_goes(daemon: FakeDaemon) -> None:
    daemon.routes["POST /containers/{}/start"] = daemon.reply(400, {"message": (
        'failed to create task for container: OCI runtime create failed: runc create failed: '
        'exec: "nope": executable file not found in $PATH: unknown')})
    daemon.echo = False
    ex = executor(daemon)
    result = await ex.run(spec(["nope"]))
    assert (result.exit_code, result.error) == (127, "command not found: nope")
    assert daemon.seen[-1] == "DELETE /containers/{}"  # before run returned
    await ex.aclose()


async def test_a_start_failure_raises_and_the_created_container_is_removed(
    daemon: FakeDaemon,
) -> None:
    daemon.routes["POST /containers/{}/start"] = daemon.reply(500, {"message": (
        "OCI runtime create failed: unable to apply cgroup configuration")})
    daemon.echo = False
    ex = executor(daemon)
    with pytest.raises(SandboxError, match="unable to apply cgroup configuration"):
        await ex.run(spec(["true"]))
    await ex.aclose()
    assert daemon.seen.count("DELETE /containers/{}") == 1
    assert "POST /containers/{}/wait" not in daemon.seen


async def test_a_missing_image_raises_image_not_found(daemon: FakeDaemon) -> None:
    daemon.routes["POST /containers/create"] = daemon.reply(
        404, {"message": "No such image: img:latest"})
    ex = executor(daemon)
    with pytest.raises(ImageNotFound):
        await ex.run(spec(["true"]))
    await ex.aclose()
    assert "POST /containers/{}/start" not in daemon.seen
    assert "DELETE /containers/{}" in daemon.seen  # whatever the create left, if anything


async def test_an_oom_kill_names_the_limit_read_from_the_container(daemon: FakeDaemon) -> None:
    daemon.routes["POST /containers/{}/wait"] = daemon.reply(200, {"StatusCode": 137})
    daemon.routes["GET /containers/{}/json"] = daemon.reply(
        200, {"State": {"OOMKilled": True}, "HostConfig": {"Memory": 96 * MiB}})
    ex = executor(daemon)
    result = await ex.run(spec(["python3"], memory_bytes=64 * MiB))
    await ex.aclose()
    assert (result.exit_code, result.signal) == (137, 9)
    assert result.error == "out of memory: killed by the cgroup memory limit of 96 MiB"


async def test_the_deadline_kills_and_removes(daemon: FakeDaemon) -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(60)
        raise AssertionError("the wait outlived the deadline")

    daemon.routes["POST /containers/{}/wait"] = never
    ex = executor(daemon)
    result = await ex.run(spec(["sleep", "60"], timeout_s=0.5))
    await ex.aclose()
    assert result.timed_out and result.exit_code is None
    assert result.stderr == b"bye"  # output that came before the deadline is kept
    assert daemon.seen[-2:] == ["POST /containers/{}/kill", "DELETE /containers/{}"]
