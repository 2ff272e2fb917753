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


def serve_gateway(port: int, image: str) -> None:
    """A real gateway whose default executor is docker (the lead's CLI wiring aside)."""
    import uvicorn

    from faas.config import Settings
    from faas.executors.docker import DockerExecutor
    from faas.gateway.app import create_app

    settings = Settings(port=port, default_executor="docker", executors=("docker",))
    app = create_app(settings, {"docker": DockerExecutor(default_image=image)})
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    import sys

    serve_gateway(int(sys.argv[1]), sys.argv[2])
