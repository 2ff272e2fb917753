"""The tests' own view of the daemon: plain synchronous httpx on the Engine API.

Independent of the code under test (``faas.executors.docker.engine``): the
leak checks and inspections ask the daemon directly. Paths are unversioned
(the daemon's own API version). Covers what the tests need and no more.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

SOCKET = "/var/run/docker.sock"


class DaemonError(Exception):
    """A call the daemon refused: ``status`` and its ``explanation`` (the message)."""

    def __init__(self, status: int, explanation: str) -> None:
        super().__init__(f"{status}: {explanation}")
        self.status = status
        self.explanation = explanation


class NotFound(DaemonError):
    """404: no such container, image or exec."""


@dataclass
class Container:
    """A container as listed; ``attrs`` is the full inspection when one was asked for."""

    id: str
    name: str
    status: str
    labels: dict[str, str]
    attrs: dict[str, Any] = field(default_factory=dict)


class Daemon:
    """The daemon at ``socket``; ``close()`` when done."""

    def __init__(self, socket: str = SOCKET, timeout_s: float = 120.0) -> None:
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=socket),
                                  base_url="http://docker", timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 204),
              **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code in ok:
            return response
        try:
            message = str(response.json().get("message", response.text))
        except ValueError:
            message = response.text
        kind = NotFound if response.status_code == 404 else DaemonError
        raise kind(response.status_code, message.strip())

    # -- the daemon --------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return dict(self._call("GET", "/info").json())

    def volumes(self, label: str | None = None) -> set[str]:
        params = {"filters": json.dumps({"label": [label]})} if label else {}
        found = self._call("GET", "/volumes", params=params).json().get("Volumes") or []
        return {str(v["Name"]) for v in found}

    # -- containers ----------------------------------------------------------------

    def containers(self, label: str, *, everything: bool = True) -> list[Container]:
        """Containers matching the label filter; ``everything=False``: running ones only."""
        params = {"all": "1" if everything else "0", "filters": json.dumps({"label": [label]})}
        return [
            Container(id=str(c["Id"]), name=str((c.get("Names") or ["?"])[0]).lstrip("/"),
                      status=str(c.get("State", "")), labels=dict(c.get("Labels") or {}))
            for c in self._call("GET", "/containers/json", params=params).json()
        ]

    def inspect(self, container: str) -> Container:
        attrs = self._call("GET", f"/containers/{quote(container)}/json").json()
        return Container(id=str(attrs["Id"]), name=str(attrs["Name"]).lstrip("/"),
                         status=str(attrs["State"]["Status"]),
                         labels=dict(attrs["Config"].get("Labels") or {}), attrs=attrs)

    def create(self, image: str, command: list[str], *, name: str | None = None,
               labels: dict[str, str] | None = None, **host_config: Any) -> str:
        """Create a container (``host_config`` in Engine API spelling); return its id."""
        body = {"Image": image, "Cmd": command, "Labels": labels or {},
                "HostConfig": host_config}
        params = {"name": name} if name else {}
        return str(self._call("POST", "/containers/create", params=params, json=body).json()["Id"])

    def start(self, container: str) -> None:
        self._call("POST", f"/containers/{quote(container)}/start", ok=(204, 304))

    def run(self, image: str, command: list[str], *, name: str | None = None,
            **host_config: Any) -> int:
        """``docker run`` without ``--rm``: create, start, wait; the exit status."""
        cid = self.create(image, command, name=name, **host_config)
        self.start(cid)
        response = self._call("POST", f"/containers/{cid}/wait")
        return int(response.json()["StatusCode"])

    def remove(self, container: str, *, missing_ok: bool = False) -> None:
        try:
            self._call("DELETE", f"/containers/{quote(container)}",
                       params={"force": "1", "v": "1"})
        except NotFound:
            if not missing_ok:
                raise

    def exec_run(self, container: str, command: list[str], *, user: str = "") -> int:
        """Run ``command`` in the running container and wait for it; its exit status."""
        exec_id = self._call(
            "POST", f"/containers/{quote(container)}/exec",
            json={"Cmd": command, "User": user, "AttachStdout": False, "AttachStderr": False},
        ).json()["Id"]
        self._call("POST", f"/exec/{exec_id}/start", json={"Detach": True, "Tty": False})
        while True:
            state = self._call("GET", f"/exec/{exec_id}/json").json()
            if not state["Running"] and state["ExitCode"] is not None:
                return int(state["ExitCode"])
            time.sleep(0.01)

    def commit(self, container: str, *, repository: str, tag: str, changes: list[str]) -> str:
        params = {"container": container, "repo": repository, "tag": tag, "changes": changes}
        return str(self._call("POST", "/commit", params=params).json()["Id"])

    # -- images --------------------------------------------------------------------

    def image(self, reference: str) -> dict[str, Any]:
        """The image's inspection; ``NotFound`` when there is none."""
        return dict(self._call("GET", f"/images/{quote(reference, safe='/:@')}/json").json())

    def remove_image(self, reference: str) -> None:
        self._call("DELETE", f"/images/{quote(reference, safe='/:@')}", params={"force": "1"})
