"""Issue 8 through a real `faas serve` whose default tier is docker: a hostile
request must never take the gateway down, nor reach past the container."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import Server, assert_still_serving, running_server

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker_gateway(docker_image: str, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Server]:
    env = {"FAAS_EXECUTORS": "sandbox,docker", "FAAS_DEFAULT_EXECUTOR": "docker",
           "FAAS_DOCKER_IMAGE": docker_image}
    with running_server(tmp_path_factory.mktemp("docker-hostile"), env) as server:
        yield server
    assert server.proc.returncode == 0, server.log()[-4000:]


@pytest.mark.parametrize("command", [["true"], ["head", "-c", "1"]])
def test_unread_stdin_never_kills_the_gateway(docker_gateway: Server,
                                              command: list[str]) -> None:
    big = base64.b64encode(os.urandom(6 * 1024 * 1024)).decode()
    medium = base64.b64encode(os.urandom(70_000)).decode()
    for payload in (big, medium, big, medium):
        r = docker_gateway.invoke(command, payload=payload)
        assert r.status_code == 200, r.text
        assert r.json()["exit_code"] == 0, r.text
        assert docker_gateway.proc.poll() is None, docker_gateway.log()[-2000:]
    assert_still_serving(docker_gateway)


def test_vsock_host_cmdline_and_huge_env_over_http(docker_gateway: Server) -> None:
    code = ("import socket\ntry:\n    socket.socket(40, socket.SOCK_STREAM)\n"
            "    print('vsock-open')\nexcept OSError as e:\n    print('errno', e.errno)")
    r = docker_gateway.invoke(["python3", "-c", code])
    assert r.status_code == 200 and r.json()["stdout"] == "errno 97\n", r.text
    r = docker_gateway.invoke(["cat", "/proc/cmdline"])
    host_cmdline = Path("/proc/cmdline").read_text().strip()
    assert r.status_code == 200 and host_cmdline not in r.json()["stdout"], r.text
    started = time.monotonic()
    r = docker_gateway.invoke(["true"], env_vars=[f"V{i}=x" for i in range(300_000)],
                              timeout_s=5)
    assert r.status_code == 400 and "env_vars" in r.json()["error"], r.text[:300]
    assert time.monotonic() - started < 5
    assert_still_serving(docker_gateway)


def test_platform_errors_name_no_host_detail(docker_gateway: Server) -> None:
    r = docker_gateway.invoke(["true"], image="no-such-image-here:latest")
    assert r.status_code == 404, r.text
    for fragment in ("/var/run", "/sys/fs", "/tmp/", "Traceback"):
        assert fragment not in r.text
    with httpx.Client(base_url=docker_gateway.url, timeout=10) as c:
        ready = c.get("/readyz").json()
    assert all(isinstance(name, str) and "/" not in name for name in ready["unavailable"])
