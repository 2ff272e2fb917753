"""Serve the gateway app with uvicorn, hardened against hostile clients.

What ``faas serve`` runs once its executors exist: the open-file limit
raised, the connection guard (``faas.gateway.guard``) around uvicorn's HTTP
protocol, its counters in ``/metrics``, and a shutdown order in which
in-flight invocations get the grace period and a clear 503, not a
cancellation from uvicorn's own shutdown timeout.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from faas.config import Settings
from faas.gateway.guard import GuardStats, guard
from faas.gateway.limits import connection_cap, limit_heap_growth, raise_open_file_limit
from faas.orchestrator import Orchestrator

#: uvicorn's own cancel timeout is this much longer than our grace, so our
#: drain (which answers each killed invocation with a 503) always runs first.
_SHUTDOWN_MARGIN_S = 15


class GatewayServer(uvicorn.Server):
    """uvicorn, draining the orchestrator as soon as shutdown begins."""

    def __init__(self, config: uvicorn.Config, orchestrator: Orchestrator,
                 grace_s: float) -> None:
        super().__init__(config)
        self._orchestrator = orchestrator
        self._grace_s = grace_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        drain = asyncio.ensure_future(self._orchestrator.drain(self._grace_s))
        try:
            await super().shutdown(sockets)
        finally:
            await drain


def build_server(app: Starlette, settings: Settings) -> GatewayServer:
    """A server for ``app`` (made by ``create_app``) with the process limits set."""
    open_files = raise_open_file_limit()
    limit_heap_growth()
    orchestrator: Orchestrator = app.state.orchestrator
    stats = GuardStats()
    orchestrator.metrics.watch_connections(stats)
    protocol = guard(AutoHTTPProtocol, read_timeout_s=settings.http_read_timeout_s,
                     max_connections=connection_cap(settings, open_files), stats=stats)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + _SHUTDOWN_MARGIN_S,
        lifespan="on", http=protocol, backlog=4096,
    )
    return GatewayServer(config, orchestrator, settings.shutdown_grace_s)
