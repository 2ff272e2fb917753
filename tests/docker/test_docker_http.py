"""The Docker tier end to end: real HTTP into a gateway whose executor is docker."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from bundle_support import tar_gz
from helpers import Server, running_server
from secrets_e2e import check_a_secret_end_to_end

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def gateway(docker_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real `faas serve`, configured to offer docker as its default executor."""
    env = {"FAAS_EXECUTORS": "sandbox,docker", "FAAS_DEFAULT_EXECUTOR": "docker",
           "FAAS_DOCKER_IMAGE": docker_image}
    with running_server(tmp_path_factory.mktemp("docker-gateway"), env) as server:
        yield server
    assert server.proc.returncode == 0, server.log()


@pytest.fixture(scope="module")
def gateway_url(gateway: Server) -> str:
    return gateway.url


def invoke(url: str, **body: object) -> httpx.Response:
    return httpx.post(f"{url}/functions/docker-e2e/invoke", json=body, timeout=60)


def test_invoke_with_executor_docker(gateway_url: str, docker_image: str) -> None:
    response = invoke(gateway_url, command=["sh", "-c", "cat; echo; echo $GREETING; id -u"],
                      image=docker_image, executor="docker", payload=list(b"hello"),
                      env_vars=["GREETING=hi"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stdout"] == "hello\nhi\n65534\n"
    assert body["error"] is None and body["exit_code"] == 0
    assert body["executor"] == "docker"


def test_binary_round_trip_over_http(gateway_url: str, docker_image: str) -> None:
    payload = os.urandom(200_000)
    response = invoke(gateway_url, command=["cat"], image=docker_image, executor="docker",
                      payload=base64.b64encode(payload).decode(), output_encoding="base64")
    assert response.status_code == 200, response.text
    assert base64.b64decode(response.json()["stdout_base64"]) == payload


def test_missing_image_is_a_404(gateway_url: str) -> None:
    started = time.monotonic()
    response = invoke(gateway_url, command=["true"], image="faas-no-such-image:v0",
                      executor="docker")
    assert response.status_code == 404, response.text
    assert "faas-no-such-image:v0" in response.json()["error"]
    assert time.monotonic() - started < 5


def test_failed_command_is_a_200_with_error(gateway_url: str, docker_image: str) -> None:
    response = invoke(gateway_url, command=["sh", "-c", "exit 3"], image=docker_image)
    assert response.status_code == 200
    assert response.json()["error"] == "exited with status 3"


def test_timeout_over_http_keeps_partial_output(gateway_url: str, docker_image: str) -> None:
    response = invoke(gateway_url, command=["sh", "-c", "echo begun; sleep 60"],
                      image=docker_image, timeout_s=2)
    assert response.status_code == 504, response.text
    body = response.json()
    assert body["timed_out"] is True and body["stdout"] == "begun\n"


def test_a_deployed_python_handler_answers_on_docker(gateway_url: str, docker_image: str) -> None:
    """Deploy code over HTTP, call it: the bundle is read-only at /function in the container."""
    handler = b"import sys\nsys.stdout.write(sys.stdin.read().upper())\n"
    spec = {"command": ["python3", "/function/handler.py"], "executor": "docker",
            "image": docker_image}
    put = httpx.put(f"{gateway_url}/functions/docker-deployed", timeout=60, files={
        "spec": (None, json.dumps(spec)), "bundle": ("code.tar.gz", tar_gz({
            "handler.py": handler}))})
    assert put.status_code == 201, put.text
    r = httpx.post(f"{gateway_url}/functions/docker-deployed/invoke", timeout=60,
                   json={"payload": list(b"from docker")})
    assert r.status_code == 200 and r.json()["stdout"] == "FROM DOCKER", r.text
    assert r.json()["executor"] == "docker"



def test_a_secret_reaches_the_container_and_nowhere_else(gateway: Server) -> None:
    check_a_secret_end_to_end(gateway.url, gateway.log_path, "docker")
