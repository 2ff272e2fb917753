"""Helpers shared by the Docker tier tests."""

from __future__ import annotations

import asyncio

from faas.models import ExecutionSpec, Limits


def make_spec(
    command: list[str], *, payload: bytes = b"", env: dict[str, str] | None = None,
    timeout_s: float = 30.0, image: str | None = None, request_id: str = "test",
    **limits: int,
) -> ExecutionSpec:
    """An ``ExecutionSpec`` whose deadline is ``timeout_s`` from now on the running loop."""
    loop = asyncio.get_running_loop()
    return ExecutionSpec(
        request_id=request_id, function_id="docker-test", command=tuple(command),
        env=env or {}, payload=payload, deadline=loop.time() + timeout_s,
        limits=Limits(**limits), image=image,
    )
