"""Whether the docker tier can run here, and if not, plainly why (for ``faas doctor``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from faas.errors import ExecutorUnavailable, FaasError
from faas.executors.base import Availability
from faas.executors.docker.engine import DEFAULT_BASE_URL, Endpoint, Engine

__all__ = ["availability"]


async def availability(
    base_url: str = DEFAULT_BASE_URL, *, runtime: str | None = None, timeout_s: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Availability:
    """Whether the daemon at ``base_url`` answers and has ``runtime`` (if one is named)."""
    try:
        endpoint = Endpoint.parse(base_url)
    except ValueError as exc:
        return Availability(False, str(exc))
    if (transport is None and endpoint.uds is not None
            and not await asyncio.to_thread(Path(endpoint.uds).exists)):
        return Availability(
            False,
            f"no Docker socket at {endpoint.uds}: dockerd is not running "
            "(install docker.io; scripts/ensure-dockerd.sh starts it)",
        )
    engine = Engine(base_url, timeout_s=timeout_s, transport=transport)
    try:
        version = await engine.version()
        runtimes = sorted((await engine.info()).get("Runtimes") or {})
    except ExecutorUnavailable as exc:
        hint = " (permission denied: run as root or join the docker group)" if (
            "Permission denied" in str(exc)) else ""
        return Availability(False, f"Docker daemon at {base_url} does not answer: {exc}{hint}")
    except FaasError as exc:
        return Availability(False, f"Docker daemon at {base_url} failed to describe itself: {exc}")
    finally:
        await engine.aclose()
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
