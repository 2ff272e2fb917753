"""The container tier: one fresh Docker container per invocation, over the Engine API.

Per invocation the executor creates a container from ``spec.image`` (never
pulling), attaches to its stdio, starts it, writes the payload to stdin and
half-closes it, drains the multiplexed stdout/stderr stream into capped
buffers, waits for the exit status and removes the container: on success,
failure, timeout, cancellation and ``aclose()`` alike. Containers run with no
network, a read-only root, a size-capped tmpfs ``/tmp``, all capabilities
dropped, ``no-new-privileges``, a seccomp profile that also refuses socket
families other than unix/inet/inet6/netlink (``docker_seccomp``; or one you
give), memory (no swap), pids and CPU limits, rlimits, logging off (output
never lands on the host disk) and a non-root user.

How it talks to the daemon (measured here, see ``bench/bench_docker.py``):

* the hot path uses ``httpx.AsyncClient`` over the unix socket for
  create/start/wait/kill/remove and a plain asyncio unix connection for the
  attach stream (an HTTP upgrade to a raw stream). Nothing blocks a thread, so
  a long-running container costs a socket, not a worker thread, and
  cancellation is immediate;
* the slow, rare paths (``availability()``, image import in
  ``faas.images.docker_image``) use the docker SDK.

Per call both clients cost the same here (well under a millisecond, the
daemon dominates); the SDK would hold a worker thread for each running
container's blocking ``wait``, and a thread cannot be cancelled.

Every container carries ``faas.managed=1``, ``faas.owner=<executor token>`` and
``faas.instance=<server instance id>`` labels: ``aclose()`` removes whatever
this executor still owns, ``sweep_dead_instances()`` (at start-up) removes
what servers that no longer run left, never a live server's, and
``sweep(everything=True)`` clears every managed container.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import docker.errors  # binds `docker` too; keeps isort from mistaking tests/docker
import httpx
import requests

from faas import instance
from faas.errors import (
    ExecutorUnavailable,
    FaasError,
    ImageNotFound,
    SandboxError,
    ShuttingDown,
    ValidationError,
)
from faas.executors import docker_seccomp
from faas.executors.base import Availability
from faas.models import ExecutionSpec, InvocationResult
from faas.proc.outcome import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    describe_exit,
    describe_oom,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_USER",
    "FUNCTION_LABEL",
    "INSTANCE_LABEL",
    "MANAGED_LABEL",
    "OWNER_LABEL",
    "REQUEST_LABEL",
    "DockerExecutor",
    "availability",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "unix:///var/run/docker.sock"
DEFAULT_USER = "65534:65534"  # nobody:nogroup
MANAGED_LABEL = "faas.managed"
OWNER_LABEL = "faas.owner"
REQUEST_LABEL = "faas.request_id"
FUNCTION_LABEL = "faas.function_id"
INSTANCE_LABEL = "faas.instance"  # the server process that made it: faas.instance.instance_id()

_STDOUT, _STDERR = 1, 2
_SIGKILL_STATUS = 128 + 9
# After a deadline kill, how long to keep reading output already in flight.
_DRAIN_AFTER_KILL_S = 0.5
_SHM_MAX = 64 * 1024 * 1024
_SEND_CHUNK = 1024 * 1024
_GUEST_TMP = "/tmp"  # noqa: S108 (the container's own tmpfs, not the host's /tmp)
# Setting MaskedPaths replaces Docker's defaults (moby oci/defaults.go): keep them
# all and add /proc/cmdline, which shows the host's kernel boot arguments.
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/cmdline",
)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """Where the Engine listens: a unix socket path, or a plain-TCP host and port."""

    uds: str | None
    host: str
    port: int

    @classmethod
    def parse(cls, base_url: str) -> _Endpoint:
        parts = urlsplit(base_url)
        if parts.scheme in ("unix", "http+unix") and parts.path:
            return cls(uds=parts.path, host="docker", port=80)
        if parts.scheme in ("tcp", "http") and parts.hostname:
            return cls(uds=None, host=parts.hostname, port=parts.port or 2375)
        raise ValueError(f"unsupported Docker base URL {base_url!r} (use unix:///path or tcp://h:p)")


class _Capture:
    """Demultiplexes the Engine's attach stream into capped stdout/stderr buffers.

    Without a TTY the stream is a sequence of frames: an 8-byte header (stream
    id, three zero bytes, big-endian length) and that many bytes of data. The
    parser is incremental (``feed`` any slice of the stream), so a read that is
    cancelled at the deadline loses nothing already received. Bytes past
    ``limit`` on a stream are read and dropped, so the container never blocks
    on a full pipe, and the stream is flagged truncated.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = {_STDOUT: bytearray(), _STDERR: bytearray()}
        self.truncated = {_STDOUT: False, _STDERR: False}
        self._header = bytearray()
        self._stream = _STDOUT
        self._left = 0

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        pos, end = 0, len(chunk)
        while pos < end:
            if self._left == 0:
                part = view[pos : pos + 8 - len(self._header)]
                self._header += part
                pos += len(part)
                if len(self._header) < 8:
                    return
                stream = self._header[0]
                self._stream = stream if stream in (_STDOUT, _STDERR) else _STDOUT
                self._left = int.from_bytes(self._header[4:8], "big")
                self._header.clear()
                continue
            take = min(self._left, end - pos)
            self._store(view[pos : pos + take])
            pos += take
            self._left -= take

    def _store(self, part: memoryview) -> None:
        buf = self.data[self._stream]
        room = self.limit - len(buf)
        if room > 0:
            buf += part[:room]
        if len(part) > room:
            self.truncated[self._stream] = True


def _message(response: httpx.Response) -> str:
    """The Engine's error message from a failed response."""
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return str(body["message"]).strip()
    return response.text.strip()[:500] or f"HTTP {response.status_code}"


def _start_failure(message: str, command: str) -> tuple[int, str] | None:
    """(exit_code, error) when the OCI runtime could not exec the command, else None.

    runc reports ``exec: "x": executable file not found in $PATH``, ``stat
    /x: no such file or directory``, ``permission denied`` or ``exec format
    error``; these are the user's command failing, reported like a shell would.
    """
    lowered = message.lower()
    if "exec:" not in lowered and "executable file not found" not in lowered:
        return None
    if "not found" in lowered or "no such file or directory" in lowered:
        return EXIT_NOT_FOUND, f"command not found: {command}"
    if "permission denied" in lowered or "exec format error" in lowered:
        return EXIT_NOT_EXECUTABLE, f"command not executable: {command}"
    return None


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Wait until ``fd`` can take more bytes."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


async def _step(call: Awaitable[_T], in_flight: list[asyncio.Future[Any]]) -> _T:
    """Await a daemon call; if interrupted, leave it running and listed in ``in_flight``.

    The call goes on at the daemon whatever we do (a create we stop waiting
    for still makes its container): the caller removes the container once
    every call in ``in_flight`` is done.
    """
    task = asyncio.ensure_future(call)
    # Its outcome may never be awaited: mark exceptions retrieved (no asyncio warning).
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    in_flight.append(task)
    result = await asyncio.shield(task)
    in_flight.remove(task)
    return result


async def _uninterrupted(awaitable: Awaitable[_T]) -> _T:
    """Await ``awaitable`` to completion even if the caller is cancelled, then re-raise.

    Used for daemon calls whose effect must be known before cleanup (a create
    that the daemon finishes after we stopped listening would leak a
    container).
    """
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            log.debug("daemon call failed after cancellation: %s", task.exception())
        raise


class DockerExecutor:
    """Runs each ``ExecutionSpec`` in a fresh, locked-down Docker container.

    Settings (all explicit, with defaults that work against a local dockerd):

    ``base_url``        Engine endpoint, ``unix:///var/run/docker.sock`` or ``tcp://h:p``.
    ``default_image``   image used when ``spec.image`` is ``None`` (else a 400).
    ``runtime``         OCI runtime name registered with the daemon (e.g. ``runsc``);
                        ``None`` uses the daemon's default (runc).
    ``user``            ``uid:gid`` the command runs as (default nobody, 65534:65534).
    ``init``            run Docker's tiny init as PID 1 (reaps zombies, forwards signals).
    ``seccomp_profile`` path to a JSON seccomp profile of your own, passed unchanged;
                        ``None`` passes ``docker_seccomp.profile()``: Docker's default
                        plus the socket-family rule, or the same policy as the
                        namespace sandbox's filter (never unconfined).
    ``api_timeout_s``   bound on each control call (create, start, remove...).
    ``name``            the executor's name in results and in the registry.
    """

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        default_image: str | None = None,
        runtime: str | None = None,
        user: str = DEFAULT_USER,
        init: bool = False,
        seccomp_profile: Path | str | None = None,
        api_timeout_s: float = 30.0,
        name: str = "docker",
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.default_image = default_image
        self.runtime = runtime
        self.user = user
        self.init = init
        self.api_timeout_s = api_timeout_s
        try:
            self._endpoint = _Endpoint.parse(base_url)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        self._security_opt = ["no-new-privileges"]
        if seccomp_profile is not None:
            try:
                profile = Path(seccomp_profile).read_text()
            except OSError as exc:
                raise ValidationError(
                    f"cannot read seccomp profile {seccomp_profile}: {exc}"
                ) from exc
            self.seccomp_source = str(seccomp_profile)
        else:
            profile, self.seccomp_source = docker_seccomp.profile()
        self._security_opt.append(f"seccomp={profile}")
        self.owner = secrets.token_hex(8)
        if self._endpoint.uds is not None:
            transport = httpx.AsyncHTTPTransport(uds=self._endpoint.uds)
            origin = "http://docker"
        else:
            transport = httpx.AsyncHTTPTransport()
            origin = f"http://{self._endpoint.host}:{self._endpoint.port}"
        self._http = httpx.AsyncClient(
            transport=transport, base_url=origin, timeout=api_timeout_s,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )
        self._prefix: str | None = None
        self._prefix_lock = asyncio.Lock()
        self._live: set[str] = set()
        self._removals: dict[asyncio.Task[None], str] = {}
        self._closed = False

    # -- Engine API plumbing -------------------------------------------------

    async def _api_prefix(self) -> str:
        """``/v<api version>``, negotiated once with the daemon (like the SDK's ``auto``)."""
        if self._prefix is not None:
            return self._prefix
        async with self._prefix_lock:
            if self._prefix is None:
                response = await self._send("GET", "/version", what="read the daemon version")
                if response.status_code != 200:
                    raise ExecutorUnavailable(
                        f"Docker daemon at {self.base_url} answered /version with "
                        f"{response.status_code}: {_message(response)}"
                    )
                try:
                    version = response.json()["ApiVersion"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise SandboxError(
                        f"Docker daemon at {self.base_url} gave an unreadable version: {exc!r}"
                    ) from exc
                self._prefix = f"/v{version}"
        return self._prefix

    async def _send(
        self, method: str, path: str, *, what: str, unbounded: bool = False, **kwargs: Any,
    ) -> httpx.Response:
        """One Engine API call; ``unbounded`` lifts the per-call timeout (for ``wait``)."""
        timeout = None if unbounded else self.api_timeout_s
        try:
            return await self._http.request(method, path, timeout=timeout, **kwargs)
        except httpx.ConnectError as exc:
            raise ExecutorUnavailable(
                f"Docker daemon at {self.base_url} is unreachable ({what}): {exc}"
            ) from exc
        except httpx.HTTPError as exc:
            raise SandboxError(f"Docker API call failed ({what}): {exc!r}") from exc

    async def _call(
        self, method: str, path: str, *, what: str, unbounded: bool = False, **kwargs: Any,
    ) -> httpx.Response:
        prefix = await self._api_prefix()
        return await self._send(method, prefix + path, what=what, unbounded=unbounded, **kwargs)

    # -- container lifecycle ---------------------------------------------------

    def _create_body(self, spec: ExecutionSpec, image: str) -> dict[str, Any]:
        limits = spec.limits
        cpu_s = max(1, limits.cpu_seconds)
        # Docker reads 0 as "unlimited" for pids and tmpfs size: never pass 0.
        pids = max(1, limits.pids)
        tmp_bytes = max(4096, limits.tmp_bytes)
        host_config: dict[str, Any] = {
            "NetworkMode": "none",
            "ReadonlyRootfs": True,
            "Tmpfs": {_GUEST_TMP: f"rw,nosuid,nodev,size={tmp_bytes},mode=1777"},
            "CapDrop": ["ALL"],
            "SecurityOpt": self._security_opt,
            "Memory": limits.memory_bytes,
            "MemorySwap": limits.memory_bytes,  # equal to Memory: no swap at all
            "PidsLimit": pids,
            "NanoCpus": max(1, limits.vcpus) * 1_000_000_000,
            "Ulimits": [
                {"Name": "cpu", "Soft": cpu_s, "Hard": cpu_s},
                {"Name": "fsize", "Soft": limits.file_size_bytes, "Hard": limits.file_size_bytes},
                {"Name": "core", "Soft": 0, "Hard": 0},
                {"Name": "nofile", "Soft": 1024, "Hard": 1024},
            ],
            "IpcMode": "private",
            "MaskedPaths": list(MASKED_PATHS),
            "ShmSize": min(tmp_bytes, _SHM_MAX),
            "LogConfig": {"Type": "none", "Config": {}},
            "Init": self.init,
            "Privileged": False,
            "AutoRemove": False,
        }
        if self.runtime:
            host_config["Runtime"] = self.runtime
        return {
            "Image": image,
            "Entrypoint": [""],  # the request's command runs as given, whatever the image says
            "Cmd": list(spec.command),
            "Env": [f"{key}={value}" for key, value in spec.env.items()],
            "User": self.user,
            "WorkingDir": _GUEST_TMP,
            "AttachStdin": True,
            "AttachStdout": True,
            "AttachStderr": True,
            "OpenStdin": True,
            "StdinOnce": True,
            "Tty": False,
            "Labels": {
                MANAGED_LABEL: "1",
                OWNER_LABEL: self.owner,
                INSTANCE_LABEL: instance.instance_id(),
                REQUEST_LABEL: spec.request_id,
                FUNCTION_LABEL: spec.function_id,
            },
            "HostConfig": host_config,
        }

    async def _create(self, spec: ExecutionSpec, image: str, name: str) -> None:
        self._live.add(name)
        response = await self._call(
            "POST", "/containers/create", what="create a container",
            params={"name": name}, json=self._create_body(spec, image),
        )
        if response.status_code == 201:
            for warning in response.json().get("Warnings") or []:
                log.debug("docker create %s: %s", name, warning)
            return
        message = _message(response)
        if response.status_code == 404 and "image" in message.lower():
            raise ImageNotFound(
                f"image {image!r} does not exist in the local Docker daemon (nothing is "
                f"pulled; import one with `faas image docker-import`): {message}"
            )
        if response.status_code == 400 and "invalid reference format" in message:
            raise ValidationError(f"image {image!r} is not a valid image reference: {message}")
        if self.runtime and "runtime" in message.lower():
            raise ExecutorUnavailable(f"OCI runtime {self.runtime!r} unusable: {message}")
        raise SandboxError(f"creating a container from {image!r} failed: {message}")

    async def _attach(self, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open the container's stdio as a raw stream (HTTP upgrade on a fresh connection)."""
        prefix = await self._api_prefix()
        try:
            if self._endpoint.uds is not None:
                reader, writer = await asyncio.open_unix_connection(self._endpoint.uds)
            else:
                reader, writer = await asyncio.open_connection(
                    self._endpoint.host, self._endpoint.port
                )
        except OSError as exc:
            raise ExecutorUnavailable(
                f"Docker daemon at {self.base_url} is unreachable (attach): {exc}"
            ) from exc
        try:
            path = f"{prefix}/containers/{quote(name)}/attach?stream=1&stdin=1&stdout=1&stderr=1"
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
                "Upgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            fields = status_line.split(" ", 2)
            if len(fields) < 2 or fields[1] not in ("101", "200"):
                body = b""
                with contextlib.suppress(OSError, TimeoutError):
                    async with asyncio.timeout(1):
                        body = await reader.read(2000)
                raise SandboxError(
                    f"attaching to container {name} failed: {status_line}: "
                    f"{body.decode('utf-8', 'replace').strip()}"
                )
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            writer.close()
            raise SandboxError(f"attaching to container {name} failed: {exc!r}") from exc
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def _start(self, name: str, command: str) -> tuple[int, str] | None:
        """Start the container; (exit_code, error) if the command itself could not run."""
        response = await self._call(
            "POST", f"/containers/{quote(name)}/start", what="start the container"
        )
        if response.status_code in (204, 304):
            return None
        message = _message(response)
        failure = _start_failure(message, command)
        if failure is None:
            raise SandboxError(f"starting container {name} failed: {message}")
        return failure

    async def _wait(self, name: str) -> int | None:
        response = await self._call(
            "POST", f"/containers/{quote(name)}/wait", what="wait for the container",
            unbounded=True,  # bounded by the invocation deadline instead
        )
        if response.status_code != 200:
            raise SandboxError(f"waiting for container {name} failed: {_message(response)}")
        code = response.json().get("StatusCode")
        return int(code) if isinstance(code, int) else None

    async def _oom_limit(self, name: str) -> int | None:
        """The memory limit in force when the OOM killer struck (0: none), else None.

        Read from the inspected container (``HostConfig.Memory``, what the
        daemon put in the container's memory cgroup), never from the request,
        so the report names the limit that actually fired.
        """
        response = await self._call(
            "GET", f"/containers/{quote(name)}/json", what="inspect the container"
        )
        if response.status_code != 200:
            return None
        info = response.json()
        if not (info.get("State") or {}).get("OOMKilled"):
            return None
        limit = (info.get("HostConfig") or {}).get("Memory")
        return limit if isinstance(limit, int) and limit > 0 else 0

    async def _kill(self, name: str) -> None:
        # 404 (gone) and 409 (not running) both mean there is nothing left to kill.
        await self._call(
            "POST", f"/containers/{quote(name)}/kill", what="kill the container",
            params={"signal": "KILL"},
        )

    async def _remove(self, name: str) -> None:
        """Force-remove (kill first if running) ``name`` with its anonymous volumes."""
        response = await self._call(
            "DELETE", f"/containers/{quote(name)}", what="remove the container",
            params={"force": "1", "v": "1"},
        )
        # 404: never created or already gone; 409: a removal is already under way.
        if response.status_code not in (204, 404, 409):
            raise SandboxError(f"removing container {name} failed: {_message(response)}")
        self._live.discard(name)

    # -- the contract ----------------------------------------------------------

    async def run(self, spec: ExecutionSpec) -> InvocationResult:
        """Run ``spec`` in a fresh container; see the module docstring for the guarantees."""
        if self._closed:
            raise ShuttingDown("the docker executor is closed")
        image = spec.image or self.default_image
        if not image:
            raise ValidationError("the docker executor needs an image (the request's `image`)")
        loop = asyncio.get_running_loop()
        started = loop.time()
        budget = max(0.0, spec.deadline - started)
        name = f"faas-{secrets.token_hex(8)}"
        capture = _Capture(spec.limits.output_bytes)
        result = InvocationResult(request_id=spec.request_id, executor=self.name)
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        ran = False
        # create/start calls the deadline or a cancellation interrupted: still in
        # flight at the daemon, so the container is removed once they are done.
        in_flight: list[asyncio.Future[Any]] = []
        try:
            timeout = asyncio.timeout_at(spec.deadline)
            try:
                async with timeout:
                    await _step(self._create(spec, image, name), in_flight)
                    conn = await self._attach(name)
                    failure = await _step(self._start(name, spec.command[0]), in_flight)
                    if failure is not None:
                        result.exit_code, result.error = failure
                    else:
                        ran = True
                        await self._pump(conn, spec.payload, capture)
                        status = await self._wait(name)
                        self._describe(result, status, await self._was_oom(name, status))
            except TimeoutError:
                if not timeout.expired():
                    raise
                # Reported as the sandbox tier does: no exit status of our own kill.
                result.timed_out = True
                result.exit_code = result.signal = None
                result.error = f"timed out after {budget:.3g}s; the container was killed"
                if ran:
                    await _uninterrupted(self._kill(name))
                    if conn is not None:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(_DRAIN_AFTER_KILL_S):
                                await self._read_all(conn[0], capture)
            result.duration_ms = (loop.time() - started) * 1000
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Only FaasErrors leave the executor (malformed daemon answers, fd exhaustion).
            raise SandboxError(f"docker executor failed: {exc!r}") from exc
        finally:
            if conn is not None:
                # abort(), not close(): close() would wait forever to flush a
                # payload the command never read.
                conn[1].transport.abort()
            if in_flight:
                # Answer now; the daemon may hold the container for a long time
                # (a start with a huge environment) and refuses to remove it
                # until then.
                self._remove_later(name, in_flight)
            else:
                await _uninterrupted(self._remove(name))
        result.stdout = bytes(capture.data[_STDOUT])
        result.stderr = bytes(capture.data[_STDERR])
        result.stdout_truncated = capture.truncated[_STDOUT]
        result.stderr_truncated = capture.truncated[_STDERR]
        return result

    async def _was_oom(self, name: str, status: int | None) -> int | None:
        # Only a SIGKILL can be the OOM killer; skip the extra round trip otherwise.
        return await self._oom_limit(name) if status == _SIGKILL_STATUS else None

    @staticmethod
    def _describe(result: InvocationResult, status: int | None, oom_limit: int | None) -> None:
        # The Engine reports a death by signal N as 128+N; describe_exit wants -N.
        returncode = status
        if status is not None and 128 < status <= 128 + 64:
            returncode = -(status - 128)
        result.exit_code, result.signal, result.error = describe_exit(returncode)
        if oom_limit is not None:  # worded as the sandbox tier words it (0: no limit)
            result.error = describe_oom(oom_limit or None)

    async def _pump(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], payload: bytes,
        capture: _Capture,
    ) -> None:
        """Feed stdin (then EOF) while draining output until the container closes it."""
        reader, writer = conn
        # stdin goes out on a duplicate of the stream's descriptor (see _feed_stdin).
        sock = socket.socket(fileno=os.dup(writer.get_extra_info("socket").fileno()))
        feeder = asyncio.create_task(self._feed_stdin(sock, payload))
        try:
            await self._read_all(reader, capture)
        finally:
            feeder.cancel()
            # wait() neither raises the feeder's CancelledError nor swallows ours.
            await asyncio.wait([feeder])
            sock.close()  # idempotent; the feeder may have been cancelled before it ran

    @staticmethod
    async def _feed_stdin(sock: socket.socket, payload: bytes) -> None:
        """Write ``payload`` then EOF to the attach stream; unread stdin is dropped.

        A command that exits without reading its stdin makes the daemon close
        the stream, and the write fails with EPIPE or ECONNRESET: that is the
        ordinary end of "stdin dropped", not an error. The bytes go out with
        ``send(MSG_NOSIGNAL)`` on ``sock``, a duplicate of the stream's
        descriptor (closed here), never through the transport's plain
        ``send()``, which raises SIGPIPE and kills the whole server where
        SIGPIPE has its default action.
        """
        loop = asyncio.get_running_loop()
        view = memoryview(payload)
        try:
            while view:
                try:
                    view = view[sock.send(view[:_SEND_CHUNK], socket.MSG_NOSIGNAL):]
                except BlockingIOError:
                    await _writable(loop, sock.fileno())
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:  # EPIPE, ECONNRESET, ENOTCONN: the command stopped reading
            log.debug("stdin dropped after %d of %d bytes: %r",
                      len(payload) - len(view), len(payload), exc)
        finally:
            sock.close()

    @staticmethod
    async def _read_all(reader: asyncio.StreamReader, capture: _Capture) -> None:
        try:
            while chunk := await reader.read(65536):
                capture.feed(chunk)
        except OSError as exc:
            log.debug("attach stream ended with %r", exc)

    # -- lifecycle -------------------------------------------------------------

    async def _labelled(self, label: str) -> dict[str, dict[str, str]]:
        """Every container (running or not) matching the label filter: id -> labels."""
        response = await self._call(
            "GET", "/containers/json", what="list containers",
            params={"all": "1", "filters": json.dumps({"label": [label]})},
        )
        if response.status_code != 200:
            raise SandboxError(f"listing containers failed: {_message(response)}")
        try:
            return {str(c["Id"]): {str(k): str(v) for k, v in (c.get("Labels") or {}).items()}
                    for c in response.json()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SandboxError(f"listing containers gave an unreadable answer: {exc!r}") from exc

    async def sweep(self, *, everything: bool = False) -> int:
        """Remove this executor's containers (or every ``faas.managed`` one); return the count.

        ``everything=True`` is for start-up on a host where this server is the
        only faas user of the daemon: it clears leftovers of a crashed run.
        """
        label = f"{MANAGED_LABEL}=1" if everything else f"{OWNER_LABEL}={self.owner}"
        names = list(await self._labelled(label))
        names += [n for n in self._live if not everything]
        await asyncio.gather(*(self._remove(n) for n in set(names)))
        return len(set(names))

    def _remove_later(self, name: str, in_flight: list[asyncio.Future[Any]]) -> None:
        """Remove ``name`` once the daemon calls in ``in_flight`` end (tracked; aclose awaits)."""

        async def remove() -> None:
            await asyncio.wait(in_flight)
            for call in in_flight:  # their outcome no longer matters; the container goes
                if not call.cancelled() and call.exception() is not None:
                    log.debug("daemon call for %s failed after the caller left: %r",
                              name, call.exception())
            try:
                await self._remove(name)
            except FaasError as exc:
                log.warning("docker executor: removing %s failed: %s", name, exc)

        task = asyncio.create_task(remove(), name=f"remove {name}")
        self._removals[task] = name
        task.add_done_callback(self._removals.pop)

    async def sweep_dead_instances(self) -> int:
        """Remove containers left by servers that no longer run; return the count.

        For start-up: a container whose ``faas.instance`` label names a server
        process that is not alive (``faas.instance.alive``) was left by a crash
        and is removed. Containers of a live server, this one included, and
        containers without the label are never touched.
        """
        found = await self._labelled(INSTANCE_LABEL)
        dead = [cid for cid, labels in found.items()
                if not instance.alive(labels.get(INSTANCE_LABEL, ""))]
        await asyncio.gather(*(self._remove(n) for n in dead))
        if dead:
            log.info("docker executor: removed %d container(s) of dead servers", len(dead))
        return len(dead)

    async def aclose(self) -> None:
        """Remove every container this executor still owns and close the client. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._removals:
                # Removals waiting for the daemon to finish a create or start.
                # Bounded: what is still pending then carries this server's
                # instance label, and the next start's sweep removes it.
                _, late = await asyncio.wait(set(self._removals), timeout=self.api_timeout_s)
                for task in late:
                    task.cancel()
                    self._live.discard(self._removals.get(task, ""))
                if late:
                    log.warning("docker executor: %d container removal(s) still waiting for "
                                "the daemon at close; left to the next start's sweep", len(late))
                    await asyncio.wait(late)
            if self._live:
                await self.sweep()
        except FaasError as exc:
            log.warning("docker executor: cleanup at close failed: %s", exc)
        finally:
            await self._http.aclose()


def _probe(base_url: str, runtime: str | None, timeout_s: float) -> Availability:
    try:
        endpoint = _Endpoint.parse(base_url)
    except ValueError as exc:
        return Availability(False, str(exc))
    if endpoint.uds is not None and not Path(endpoint.uds).exists():
        return Availability(
            False,
            f"no Docker socket at {endpoint.uds}: dockerd is not running "
            "(install docker.io; scripts/ensure-dockerd.sh starts it)",
        )
    try:
        client = docker.DockerClient(base_url=base_url, version="auto", timeout=int(timeout_s))
    except docker.errors.DockerException as exc:
        hint = " (permission denied: run as root or join the docker group)" if (
            "Permission denied" in str(exc)) else ""
        return Availability(False, f"Docker daemon at {base_url} does not answer: {exc}{hint}")
    try:
        version = client.version()
        runtimes = sorted((client.info().get("Runtimes") or {}).keys())
    except (docker.errors.DockerException, requests.RequestException) as exc:
        return Availability(False, f"Docker daemon at {base_url} failed to describe itself: {exc}")
    finally:
        client.close()
    if runtime and runtime not in runtimes:
        return Availability(
            False, f"OCI runtime {runtime!r} is not registered with dockerd (has: "
            f"{', '.join(runtimes) or 'none'})",
        )
    return Availability(
        True,
        f"Docker Engine {version.get('Version')} (API {version.get('ApiVersion')}) at "
        f"{base_url}; runtimes: {', '.join(runtimes) or 'default'}",
    )


async def availability(
    base_url: str = DEFAULT_BASE_URL, *, runtime: str | None = None, timeout_s: float = 5.0
) -> Availability:
    """Whether the Docker tier can run here, and if not, plainly why (for ``faas doctor``)."""
    return await asyncio.to_thread(_probe, base_url, runtime, timeout_s)
