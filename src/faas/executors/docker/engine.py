"""An async Docker Engine API client on httpx: the docker tier's only way to the daemon.

``Engine`` knows where the daemon listens (``Endpoint``: ``unix:///path`` or
``tcp://host:port``), negotiates the API version once (the daemon's own, as
the SDK's ``version="auto"`` does), and turns every HTTP answer into either a
plain value or a ``faas.errors`` exception. This module is the one place where
daemon statuses and messages are read:

    connection refused / no socket      -> ExecutorUnavailable
    /version not 200                    -> ExecutorUnavailable
    create: 404 naming the image        -> ImageNotFound
    create: 400 invalid reference       -> ValidationError
    create: message naming the runtime  -> ExecutorUnavailable (when a runtime was asked for)
    start refused                       -> StartRefused (a SandboxError carrying the message)
    anything else unexpected            -> SandboxError

The HTTP transport is injectable (``transport=httpx.MockTransport(...)`` in
the unit tests); by default it is the unix socket or TCP connection the
endpoint names. The attach stream is an HTTP upgrade to a raw byte stream,
which httpx does not hand out, so ``attach`` opens its own asyncio connection
to the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from faas.errors import ExecutorUnavailable, ImageNotFound, SandboxError, ValidationError

__all__ = ["DEFAULT_BASE_URL", "Endpoint", "Engine", "StartRefused"]

DEFAULT_BASE_URL = "unix:///var/run/docker.sock"
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the Engine listens: a unix socket path, or a plain-TCP host and port."""

    uds: str | None
    host: str
    port: int

    @classmethod
    def parse(cls, base_url: str) -> Endpoint:
        parts = urlsplit(base_url)
        if parts.scheme in ("unix", "http+unix") and parts.path:
            return cls(uds=parts.path, host="docker", port=80)
        if parts.scheme in ("tcp", "http") and parts.hostname:
            return cls(uds=None, host=parts.hostname, port=parts.port or 2375)
        raise ValueError(f"unsupported Docker base URL {base_url!r} (use unix:///path or tcp://h:p)")

    @property
    def origin(self) -> str:
        return "http://docker" if self.uds is not None else f"http://{self.host}:{self.port}"


class StartRefused(SandboxError):
    """The daemon refused to start a container; ``message`` is the daemon's own words.

    The executor reads it to tell a command that cannot run (``exec: "x":
    executable file not found``: the user's failure) from a platform failure.
    """

    def __init__(self, text: str, message: str) -> None:
        super().__init__(text)
        self.message = message


def message_of(response: httpx.Response) -> str:
    """The Engine's error message from a failed response."""
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return str(body["message"]).strip()
    return response.text.strip()[:500] or f"HTTP {response.status_code}"


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise SandboxError(f"Docker daemon gave an unreadable answer ({what}): {exc!r}") from exc


class Engine:
    """One daemon's Engine API. ``aclose()`` closes the connection pool (idempotent)."""

    def __init__(
        self, base_url: str = DEFAULT_BASE_URL, *, timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Raises ``ValueError`` when ``base_url`` is neither ``unix://`` nor ``tcp://``."""
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.endpoint = Endpoint.parse(base_url)
        if transport is None:
            transport = httpx.AsyncHTTPTransport(uds=self.endpoint.uds)
        self._http = httpx.AsyncClient(
            transport=transport, base_url=self.endpoint.origin, timeout=timeout_s,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )
        self._prefix: str | None = None
        self._prefix_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing ----------------------------------------------------------------

    async def send(
        self, method: str, path: str, *, what: str, unbounded: bool = False, **kwargs: Any,
    ) -> httpx.Response:
        """One unversioned call; ``unbounded`` lifts the per-call timeout (for ``wait``)."""
        timeout = None if unbounded else self.timeout_s
        try:
            return await self._http.request(method, path, timeout=timeout, **kwargs)
        except httpx.ConnectError as exc:
            raise ExecutorUnavailable(
                f"Docker daemon at {self.base_url} is unreachable ({what}): {exc}"
            ) from exc
        except httpx.HTTPError as exc:
            raise SandboxError(f"Docker API call failed ({what}): {exc!r}") from exc

    async def api_prefix(self) -> str:
        """``/v<api version>``, negotiated once with the daemon (like the SDK's ``auto``)."""
        if self._prefix is not None:
            return self._prefix
        async with self._prefix_lock:
            if self._prefix is None:
                version = (await self.version()).get("ApiVersion")
                if not isinstance(version, str) or not version:
                    raise SandboxError(
                        f"Docker daemon at {self.base_url} gave an unreadable version: "
                        f"ApiVersion={version!r}"
                    )
                self._prefix = f"/v{version}"
        return self._prefix

    async def call(
        self, method: str, path: str, *, what: str, unbounded: bool = False, **kwargs: Any,
    ) -> httpx.Response:
        """One call under the negotiated ``/v<version>`` prefix."""
        prefix = await self.api_prefix()
        return await self.send(method, prefix + path, what=what, unbounded=unbounded, **kwargs)

    # -- the daemon ------------------------------------------------------------------

    async def version(self) -> dict[str, Any]:
        """``GET /version`` (unversioned, so it works before negotiation)."""
        response = await self.send("GET", "/version", what="read the daemon version")
        if response.status_code != 200:
            raise ExecutorUnavailable(
                f"Docker daemon at {self.base_url} answered /version with "
                f"{response.status_code}: {message_of(response)}"
            )
        body = _json(response, "version")
        if not isinstance(body, dict):
            raise SandboxError(f"Docker daemon at {self.base_url} gave an unreadable version")
        return body

    async def info(self) -> dict[str, Any]:
        response = await self.call("GET", "/info", what="describe the daemon")
        body = _json(response, "info") if response.status_code == 200 else None
        if not isinstance(body, dict):
            raise SandboxError(f"/info failed: {message_of(response)}")
        return body

    # -- containers --------------------------------------------------------------

    async def create_container(
        self, name: str, body: dict[str, Any], *, runtime: str | None = None,
    ) -> list[str]:
        """Create container ``name`` from ``body`` (never pulling); return the daemon's warnings."""
        image = body.get("Image")
        response = await self.call(
            "POST", "/containers/create", what="create a container",
            params={"name": name}, json=body,
        )
        if response.status_code == 201:
            warnings = _json(response, "create").get("Warnings") or []
            return [str(w) for w in warnings]
        message = message_of(response)
        if response.status_code == 404 and "image" in message.lower():
            raise ImageNotFound(
                f"image {image!r} does not exist in the local Docker daemon (nothing is "
                f"pulled; import one with `faas image docker-import`): {message}"
            )
        if response.status_code == 400 and "invalid reference format" in message:
            raise ValidationError(f"image {image!r} is not a valid image reference: {message}")
        if runtime and "runtime" in message.lower():
            raise ExecutorUnavailable(f"OCI runtime {runtime!r} unusable: {message}")
        raise SandboxError(f"creating a container from {image!r} failed: {message}")

    async def attach(self, name: str) -> Stream:
        """Open the container's stdio as a raw stream (HTTP upgrade on a fresh connection)."""
        prefix = await self.api_prefix()
        try:
            if self.endpoint.uds is not None:
                reader, writer = await asyncio.open_unix_connection(self.endpoint.uds)
            else:
                reader, writer = await asyncio.open_connection(
                    self.endpoint.host, self.endpoint.port
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

    async def start_container(self, name: str) -> None:
        """Start ``name``; raises ``StartRefused`` with the daemon's message if it will not."""
        response = await self.call(
            "POST", f"/containers/{quote(name)}/start", what="start the container"
        )
        if response.status_code not in (204, 304):
            message = message_of(response)
            raise StartRefused(f"starting container {name} failed: {message}", message)

    async def wait_container(self, name: str) -> int | None:
        """The exit status once ``name`` ends (no timeout: the caller's deadline bounds it)."""
        response = await self.call(
            "POST", f"/containers/{quote(name)}/wait", what="wait for the container",
            unbounded=True,
        )
        if response.status_code != 200:
            raise SandboxError(f"waiting for container {name} failed: {message_of(response)}")
        code = _json(response, "wait").get("StatusCode")
        return int(code) if isinstance(code, int) else None

    async def inspect_container(self, name: str) -> dict[str, Any] | None:
        """The container's description, or None when the daemon has none to give."""
        response = await self.call(
            "GET", f"/containers/{quote(name)}/json", what="inspect the container"
        )
        body = _json(response, "inspect") if response.status_code == 200 else None
        return body if isinstance(body, dict) else None

    async def kill_container(self, name: str) -> None:
        # 404 (gone) and 409 (not running) both mean there is nothing left to kill.
        await self.call(
            "POST", f"/containers/{quote(name)}/kill", what="kill the container",
            params={"signal": "KILL"},
        )

    async def remove_container(self, name: str) -> None:
        """Force-remove (kill first if running) ``name`` with its anonymous volumes."""
        response = await self.call(
            "DELETE", f"/containers/{quote(name)}", what="remove the container",
            params={"force": "1", "v": "1"},
        )
        # 404: never created or already gone; 409: a removal is already under way.
        if response.status_code not in (204, 404, 409):
            raise SandboxError(f"removing container {name} failed: {message_of(response)}")

    async def labelled_containers(self, label: str) -> dict[str, dict[str, str]]:
        """Every container (running or not) matching the label filter: id -> labels."""
        response = await self.call(
            "GET", "/containers/json", what="list containers",
            params={"all": "1", "filters": json.dumps({"label": [label]})},
        )
        if response.status_code != 200:
            raise SandboxError(f"listing containers failed: {message_of(response)}")
        try:
            return {str(c["Id"]): {str(k): str(v) for k, v in (c.get("Labels") or {}).items()}
                    for c in response.json()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SandboxError(f"listing containers gave an unreadable answer: {exc!r}") from exc

    # -- images --------------------------------------------------------------------

    async def inspect_image(self, reference: str) -> dict[str, Any] | None:
        """The local image's description, or None when there is no such image."""
        response = await self.call(
            "GET", f"/images/{quote(reference, safe='/:@')}/json", what="inspect an image"
        )
        if response.status_code == 404:
            return None
        body = _json(response, "image inspect") if response.status_code == 200 else None
        if not isinstance(body, dict):
            raise SandboxError(f"inspecting image {reference} failed: {message_of(response)}")
        return body

    async def import_image(
        self, content: AsyncIterator[bytes], *, repository: str, tag: str, changes: list[str],
    ) -> None:
        """``docker import``: a rootfs tarball streamed from ``content`` becomes ``repo:tag``.

        The daemon answers 200 and then reports progress, or a failure, as a
        stream of JSON objects; an ``error`` among them is a failed import.
        """
        response = await self.call(
            "POST", "/images/create", what="import an image",
            params={"fromSrc": "-", "repo": repository, "tag": tag, "changes": changes},
            content=content, headers={"Content-Type": "application/x-tar"},
        )
        if response.status_code != 200:
            raise SandboxError(f"importing {repository}:{tag} failed: {message_of(response)}")
        decoder = json.JSONDecoder()
        text, pos = response.text, 0
        while (pos := _skip_space(text, pos)) < len(text):
            try:
                item, pos = decoder.raw_decode(text, pos)
            except ValueError:
                break  # progress we cannot read is not a failure
            if isinstance(item, dict) and item.get("error"):
                raise SandboxError(f"importing {repository}:{tag} failed: {item['error']}")

    async def remove_image(self, image_id: str) -> bool:
        """Remove an image if nothing uses it; False when the daemon keeps it (in use, gone)."""
        response = await self.call(
            "DELETE", f"/images/{quote(image_id, safe='')}", what="remove an image"
        )
        return response.status_code == 200


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos
