"""The Docker tier end to end: real HTTP into a gateway whose executor is docker."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import free_port

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def gateway_url(docker_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("docker-gateway") / "gateway.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("docker_support.py")), str(port),
             docker_image], stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # uvicorn re-raises SIGTERM after its graceful shutdown.
        assert proc.returncode in (0, -15), log_path.read_text()


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
