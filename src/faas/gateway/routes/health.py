"""Operations: ``GET /healthz`` (the process answers), ``GET /readyz`` (accepting work and
the default executor exists) and ``GET /metrics`` (Prometheus text format).

Each also answers HEAD, outside the document, as a plain Starlette route would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from faas.gateway.context import Gateway
from faas.gateway.responses import OrjsonResponse, PrometheusResponse
from faas.gateway.schemas import Health, Readiness


def _get(api: APIRouter, path: str, **kwargs: Any) -> Callable[[Any], Any]:
    """``api.get(path)`` plus a HEAD twin left out of the document."""
    def register(endpoint: Callable[..., Any]) -> Any:
        api.add_api_route(path, endpoint, methods=["GET"], tags=["operations"], **kwargs)
        api.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)
        return endpoint
    return register


def add_routes(api: APIRouter, gateway: Gateway) -> None:
    settings, orch, budget = gateway.settings, gateway.orchestrator, gateway.budget

    @_get(api, "/healthz", response_model=Health, summary="liveness")
    async def healthz(request: Request) -> Response:
        return OrjsonResponse({"status": "ok"})

    @_get(api, "/readyz", response_model=Readiness, summary="readiness",
          response_description="ready",
          responses={503: {"model": Readiness, "description": "not ready"}})
    async def readyz(request: Request) -> Response:
        ready = orch.accepting and settings.default_executor in orch.executors
        # Names only: why a tier is unavailable (paths, versions) is in the
        # log and in `faas doctor`, for the operator.
        body = {"ready": ready, "accepting": orch.accepting,
                "executors": sorted(orch.executors), "unavailable": sorted(orch.unavailable),
                "default_executor": settings.default_executor}
        return OrjsonResponse(body, status_code=200 if ready else 503)

    @_get(api, "/metrics", response_class=PrometheusResponse, summary="Prometheus metrics",
          response_description="text exposition format")
    async def metrics(request: Request) -> Response:
        orch.refresh_pool_gauges()
        orch.metrics.body_budget_used.set(budget.used)
        # Rendering walks every series: off the event loop, so a scrape
        # never delays /healthz or an invocation.
        text = await asyncio.to_thread(orch.metrics.render)
        return PrometheusResponse(text)
