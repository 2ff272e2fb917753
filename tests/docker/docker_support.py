"""Helpers shared by the Docker tier tests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections.abc import Callable
from typing import TypeVar

from engine_http import Container, Daemon, DaemonError

from faas.executors.docker import OWNER_LABEL, REQUEST_LABEL, DockerExecutor
from faas.models import ExecutionSpec, FunctionBundle, InvocationResult, Limits

_T = TypeVar("_T")

#: Appended to a probe's script: the command waits until the test releases it.
GATE = "while [ ! -e /tmp/.go ]; do sleep 0.05; done"


def make_spec(
    command: list[str], *, payload: bytes = b"", env: dict[str, str] | None = None,
    timeout_s: float = 30.0, image: str | None = None, request_id: str = "test",
    bundle: FunctionBundle | None = None, **limits: int,
) -> ExecutionSpec:
    """An ``ExecutionSpec`` whose deadline is ``timeout_s`` from now on the running loop."""
    loop = asyncio.get_running_loop()
    return ExecutionSpec(
        request_id=request_id, function_id="docker-test", command=tuple(command),
        env=env or {}, payload=payload, deadline=loop.time() + timeout_s,
        limits=Limits(**limits), image=image, bundle=bundle,
    )


def owned_containers(client: Daemon, owner: str) -> list[str]:
    """Every container (any state) carrying ``faas.owner=<owner>``, as "name (status)"."""
    return [f"{c.name} ({c.status})" for c in client.containers(f"{OWNER_LABEL}={owner}")]


class CallCheckedExecutor(DockerExecutor):
    """A ``DockerExecutor`` that asserts, after every call, that its container is gone.

    The check asks the daemon directly (not the executor) and runs when the
    call returns, before ``aclose()`` could sweep anything: a container left
    behind by one call fails that call's test. It runs when no other call of
    this executor is in flight and no deliberate background removal (a start
    the daemon still holds after a deadline) is pending.
    """

    def __init__(self, client: Daemon, *, default_image: str) -> None:
        super().__init__(default_image=default_image)
        self.client = client
        self.running = 0

    async def run(self, spec: ExecutionSpec) -> InvocationResult:
        self.running += 1
        try:
            result = await super().run(spec)
        except asyncio.CancelledError:
            self.running -= 1
            raise
        except Exception:
            self.running -= 1
            await self.assert_nothing_left(spec)
            raise
        self.running -= 1
        await self.assert_nothing_left(spec)
        return result

    async def assert_nothing_left(self, spec: ExecutionSpec) -> None:
        if self.running or self._removals:
            return
        left = await asyncio.to_thread(owned_containers, self.client, self.owner)
        assert not left, f"call {spec.request_id!r} left containers behind: {left}"


def _ready_container(client: Daemon, request_id: str) -> Container | None:
    """The request's container once its script is done (it made /tmp/.ready), else None."""
    found = client.containers(f"{REQUEST_LABEL}={request_id}", everything=False)
    if found:
        with contextlib.suppress(DaemonError):  # it may have just ended
            if client.exec_run(found[0].id, ["test", "-e", "/tmp/.ready"],
                               user="65534:65534") == 0:
                return client.inspect(found[0].id)
    return None


async def while_running(
    executor: DockerExecutor, client: Daemon, script: str,
    check: Callable[[Container], _T], *, timeout_s: float = 60.0, **limits: int,
) -> tuple[_T, InvocationResult]:
    """Run ``script`` in a container, call ``check`` on it while it runs, then let it end.

    ``script`` runs in ``sh``; once it is done the command marks itself ready
    and waits; ``check(container)`` runs then (in a thread, with the container
    inspected afresh), after which the test lets the command exit. Returns
    what ``check`` returned and the call's result.
    """
    request_id = f"probe-{secrets.token_hex(6)}"
    spec = dataclasses.replace(
        make_spec(["sh", "-c", f"{script}\ntouch /tmp/.ready; {GATE}"],
                  request_id=request_id, timeout_s=timeout_s),
        limits=Limits(**limits),
    )
    task = asyncio.create_task(executor.run(spec))
    deadline = time.monotonic() + timeout_s
    try:
        while (container := await asyncio.to_thread(_ready_container, client, request_id)) is None:
            if task.done():  # the call ended (or failed) before the script was done
                raise AssertionError(f"the call ended before the check: {await task}")
            assert time.monotonic() < deadline, f"no ready container for {request_id} in time"
            await asyncio.sleep(0.05)
        value = await asyncio.to_thread(check, container)
        await asyncio.to_thread(client.exec_run, container.id, ["touch", "/tmp/.go"],
                                user="65534:65534")
        result = await task
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
    return value, result
