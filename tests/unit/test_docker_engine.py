"""The Engine API client without a daemon: every HTTP answer it can get, through MockTransport."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from faas.errors import (
    ExecutorUnavailable,
    FaasError,
    ImageNotFound,
    SandboxError,
    ValidationError,
)
from faas.executors.docker import DockerExecutor, availability
from faas.executors.docker.engine import Endpoint, Engine, StartRefused

URL = "tcp://docker.test:2375"
API = "1.44"
Handler = Callable[[httpx.Request], httpx.Response]


class FakeDaemon:
    """Answers /version with API 1.44 and everything else from ``routes`` (METHOD /path)."""

    def __init__(self, routes: dict[str, Handler] | None = None) -> None:
        self.routes = routes or {}
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/version":
            return httpx.Response(200, json={"ApiVersion": API, "Version": "27.5.1"})
        prefix = f"/v{API}"
        assert request.url.path.startswith(prefix), request.url.path
        key = f"{request.method} {request.url.path.removeprefix(prefix)}"
        if key not in self.routes:
            return httpx.Response(500, json={"message": f"unexpected {key}"})
        return self.routes[key](request)

    def engine(self) -> Engine:
        return Engine(URL, timeout_s=5, transport=httpx.MockTransport(self))


def answer(status: int, body: Any = None) -> Handler:
    return lambda request: httpx.Response(status, json=body) if body is not None else (
        httpx.Response(status))


def error(status: int, message: str) -> Handler:
    return answer(status, {"message": message})


BODY = {"Image": "faas-rootfs:latest", "Cmd": ["true"]}


# -- endpoint and version negotiation ------------------------------------------------------


def test_endpoints() -> None:
    assert Endpoint.parse("unix:///var/run/docker.sock") == Endpoint(
        "/var/run/docker.sock", "docker", 80)
    assert Endpoint.parse("tcp://10.0.0.2").origin == "http://10.0.0.2:2375"
    assert Endpoint.parse("tcp://h:1234") == Endpoint(None, "h", 1234)
    for bad in ("ssh://host", "unix://", "docker.sock", "tcp://:80"):
        with pytest.raises(ValueError, match="unsupported Docker base URL"):
            Endpoint.parse(bad)
    with pytest.raises(ValidationError):
        DockerExecutor(base_url="ssh://host")


async def test_version_is_negotiated_once_and_prefixes_every_call() -> None:
    daemon = FakeDaemon({"POST /containers/x/kill": answer(204),
                         "DELETE /containers/x": answer(204)})
    engine = daemon.engine()
    await engine.kill_container("x")
    await engine.remove_container("x")
    await engine.aclose()
    assert daemon.seen == ["GET /version", f"POST /v{API}/containers/x/kill",
                           f"DELETE /v{API}/containers/x"]


async def test_a_failed_version_call_means_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"message": "daemon is shutting down"})

    engine = Engine(URL, transport=httpx.MockTransport(refuse))
    with pytest.raises(ExecutorUnavailable, match="shutting down"):
        await engine.remove_container("x")
    await engine.aclose()


async def test_an_unreadable_version_is_a_sandbox_error() -> None:
    for body in ({"Version": "27"}, ["1.44"]):
        engine = Engine(URL, transport=httpx.MockTransport(
            lambda request, body=body: httpx.Response(200, json=body)))
        with pytest.raises(SandboxError, match="unreadable version"):
            await engine.remove_container("x")
        await engine.aclose()


async def test_connection_refused_is_unavailable_other_transport_errors_are_not() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    engine = Engine(URL, transport=httpx.MockTransport(refused))
    with pytest.raises(ExecutorUnavailable, match="unreachable"):
        await engine.version()
    engine = Engine(URL, transport=httpx.MockTransport(reset))
    with pytest.raises(SandboxError, match="reset") as caught:
        await engine.version()
    assert not isinstance(caught.value, ExecutorUnavailable)


# -- create: the image and the runtime --------------------------------------------------------


async def create(routes: dict[str, Handler], runtime: str | None = None) -> list[str]:
    engine = FakeDaemon(routes).engine()
    try:
        return await engine.create_container("c1", BODY, runtime=runtime)
    finally:
        await engine.aclose()


async def test_create_sends_the_body_and_name_and_returns_warnings() -> None:
    sent: list[httpx.Request] = []

    def created(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json={"Id": "abc", "Warnings": ["swap limit"]})

    assert await create({"POST /containers/create": created}) == ["swap limit"]
    assert sent[0].url.params["name"] == "c1"
    assert json.loads(sent[0].content) == BODY


async def test_missing_image_404_is_image_not_found() -> None:
    with pytest.raises(ImageNotFound, match="faas-rootfs:latest") as caught:
        await create({"POST /containers/create": error(
            404, "No such image: faas-rootfs:latest")})
    assert caught.value.status == 404 and "docker-import" in str(caught.value)


async def test_a_404_that_is_not_about_the_image_is_a_sandbox_error() -> None:
    with pytest.raises(SandboxError, match="no such network"):
        await create({"POST /containers/create": error(404, "no such network: x")})


async def test_bad_image_reference_is_a_400() -> None:
    with pytest.raises(ValidationError, match="not a valid image reference") as caught:
        await create({"POST /containers/create": error(
            400, "invalid reference format: repository name must be lowercase")})
    assert caught.value.status == 400


async def test_unknown_runtime_is_unavailable_only_when_one_was_asked_for() -> None:
    refusal = {"POST /containers/create": error(
        400, "unknown or invalid runtime name: runsc")}
    with pytest.raises(ExecutorUnavailable, match="'runsc' unusable") as caught:
        await create(refusal, runtime="runsc")
    assert caught.value.status == 503
    with pytest.raises(SandboxError) as plain:
        await create(refusal)
    assert type(plain.value) is SandboxError


async def test_a_non_json_error_body_is_quoted_as_text() -> None:
    with pytest.raises(SandboxError, match="bad gateway from proxy"):
        await create({"POST /containers/create": lambda r: httpx.Response(
            502, text="bad gateway from proxy")})


# -- start, wait, inspect, remove, list ---------------------------------------------------------


async def test_start_refusal_carries_the_daemon_message() -> None:
    msg = 'OCI runtime create failed: exec: "nope": executable file not found in $PATH'
    engine = FakeDaemon({"POST /containers/c1/start": error(400, msg)}).engine()
    with pytest.raises(StartRefused) as caught:
        await engine.start_container("c1")
    await engine.aclose()
    assert caught.value.message == msg and isinstance(caught.value, SandboxError)


async def test_start_accepts_started_and_already_started() -> None:
    for status in (204, 304):
        engine = FakeDaemon({"POST /containers/c1/start": answer(status)}).engine()
        await engine.start_container("c1")
        await engine.aclose()


async def test_wait_inspect_remove_and_list() -> None:
    daemon = FakeDaemon({
        "POST /containers/c1/wait": answer(200, {"StatusCode": 137}),
        "POST /containers/c2/wait": answer(404, {"message": "No such container: c2"}),
        "GET /containers/c1/json": answer(200, {"State": {"OOMKilled": True}}),
        "GET /containers/gone/json": answer(404, {"message": "No such container"}),
        "DELETE /containers/gone": answer(404, {"message": "No such container"}),
        "DELETE /containers/busy": answer(409, {"message": "removal in progress"}),
        "DELETE /containers/stuck": answer(500, {"message": "device or resource busy"}),
        "GET /containers/json": lambda r: httpx.Response(200, json=[
            {"Id": "a", "Labels": {"faas.instance": r.url.params["filters"]}},
            {"Id": "b", "Labels": None}]),
    })
    engine = daemon.engine()
    try:
        assert await engine.wait_container("c1") == 137
        with pytest.raises(SandboxError, match="No such container: c2"):
            await engine.wait_container("c2")
        assert await engine.inspect_container("c1") == {"State": {"OOMKilled": True}}
        assert await engine.inspect_container("gone") is None
        await engine.remove_container("gone")  # already gone: fine
        await engine.remove_container("busy")  # being removed: fine
        with pytest.raises(SandboxError, match="device or resource busy"):
            await engine.remove_container("stuck")
        found = await engine.labelled_containers("faas.instance")
        assert found == {"a": {"faas.instance": '{"label": ["faas.instance"]}'}, "b": {}}
    finally:
        await engine.aclose()


async def test_an_unreadable_container_list_is_a_sandbox_error() -> None:
    engine = FakeDaemon({"GET /containers/json": answer(200, {"not": "a list"})}).engine()
    with pytest.raises(SandboxError, match="unreadable"):
        await engine.labelled_containers("faas.managed=1")
    await engine.aclose()


# -- images ----------------------------------------------------------------------------------


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_image_import_streams_the_tarball_with_its_changes() -> None:
    sent: list[tuple[httpx.URL, bytes]] = []

    def imported(request: httpx.Request) -> httpx.Response:
        sent.append((request.url, request.content))  # MockTransport read the stream
        return httpx.Response(200, text='{"status":"sha256:1"}\r\n')

    daemon = FakeDaemon({"POST /images/create": imported})
    engine = daemon.engine()
    await engine.import_image(chunks(b"tar", b"ball"), repository="r", tag="t",
                              changes=["WORKDIR /", "LABEL a=b"])
    await engine.aclose()
    url, body = sent[0]
    assert body == b"tarball"
    assert url.params.get_list("changes") == ["WORKDIR /", "LABEL a=b"]
    assert (url.params["fromSrc"], url.params["repo"], url.params["tag"]) == ("-", "r", "t")


async def test_an_error_inside_the_import_progress_stream_fails_the_import() -> None:
    progress = '{"status":"Importing"}\n{"errorDetail":{"message":"bad tar"},"error":"bad tar"}\n'
    daemon = FakeDaemon({"POST /images/create": lambda r: httpx.Response(200, text=progress)})
    engine = daemon.engine()
    with pytest.raises(SandboxError, match="bad tar"):
        await engine.import_image(chunks(b"x"), repository="r", tag="t", changes=[])
    await engine.aclose()


async def test_image_inspect_and_remove() -> None:
    daemon = FakeDaemon({
        "GET /images/faas-rootfs:latest/json": answer(200, {"Id": "sha256:1"}),
        "GET /images/missing:latest/json": error(404, "No such image"),
        "DELETE /images/sha256:1": answer(200, []),
        "DELETE /images/sha256:2": error(409, "image is being used by a container"),
    })
    engine = daemon.engine()
    assert await engine.inspect_image("faas-rootfs:latest") == {"Id": "sha256:1"}
    assert await engine.inspect_image("missing:latest") is None
    assert await engine.remove_image("sha256:1") is True
    assert await engine.remove_image("sha256:2") is False
    await engine.aclose()


# -- the probe ---------------------------------------------------------------------------------


def probe_daemon(runtimes: dict[str, Any]) -> httpx.MockTransport:
    return httpx.MockTransport(FakeDaemon({"GET /info": answer(200, {"Runtimes": runtimes})}))


async def test_probe_reports_version_and_runtimes() -> None:
    state = await availability(URL, transport=probe_daemon({"runc": {}, "runsc": {}}))
    assert state.usable
    assert state.reason == (f"Docker Engine 27.5.1 (API {API}) at {URL}; runtimes: runc, runsc")


async def test_probe_names_a_missing_runtime_and_the_ones_there_are() -> None:
    state = await availability(URL, runtime="kata", transport=probe_daemon({"runc": {}}))
    assert not state.usable
    assert state.reason == "OCI runtime 'kata' is not registered with dockerd (has: runc)"


async def test_probe_of_an_unreachable_or_broken_daemon() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 13] Permission denied", request=request)

    state = await availability(URL, transport=httpx.MockTransport(refused))
    assert not state.usable and "does not answer" in state.reason
    assert "join the docker group" in state.reason
    broken = httpx.MockTransport(FakeDaemon({"GET /info": answer(500, {"message": "boom"})}))
    state = await availability(URL, transport=broken)
    assert not state.usable and "failed to describe itself" in state.reason
    assert not (await availability("ftp://x")).usable
    missing = await availability("unix:///nonexistent/docker.sock")
    assert not missing.usable and "no Docker socket at /nonexistent/docker.sock" in missing.reason


def test_every_engine_error_is_a_faas_error() -> None:
    assert issubclass(StartRefused, FaasError)


def test_the_runtime_needs_neither_the_docker_sdk_nor_requests() -> None:
    """Serving, probing and importing images load no docker SDK and no requests."""
    code = (
        "import sys, faas.cli, faas.executors.registry, faas.executors.docker, "
        "faas.images.docker_image, faas.gateway.app; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('docker', 'requests')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def test_the_package_keeps_the_names_callers_import() -> None:
    import faas.executors.docker as package

    assert sorted(package.__all__) == sorted([
        "DEFAULT_BASE_URL", "DEFAULT_USER", "FUNCTION_LABEL", "INSTANCE_LABEL", "MANAGED_LABEL",
        "MASKED_PATHS", "OWNER_LABEL", "REQUEST_LABEL", "DockerExecutor", "Engine",
        "availability"])
    assert all(hasattr(package, name) for name in package.__all__)
