"""The HTTP gateway (the seed's faas-gateway): a FastAPI app on Starlette, built by ``create_app``.

Layout: one module per resource under ``faas.gateway.routes`` (``invoke``:
``POST /functions/{function_id}/invoke``; ``raw``: ``POST /function/{id}``;
``functions``: deploy, list, get, delete; ``health``: ``/healthz``,
``/readyz``, ``/metrics``), each an ``add_routes(api, gateway)`` over the
shared ``Gateway`` (``faas.gateway.context``). Answers are typed
(``faas.gateway.schemas``), so ``GET /openapi.json`` is generated
(``faas.gateway.openapi``) and ``GET /docs`` renders it.

Every error body is ``{"error": "..."}``: the handlers here give FastAPI's own
errors that shape (a request it cannot validate is a 400, not a 422; an
unknown route a 404; a wrong method a 405 with ``Allow``; a bug a 500 that
says nothing of it).

Hostile clients: the invoke body is read only once its memory is reserved
from a budget shared by all requests (``faas.gateway.budget``) and must
arrive within ``http_read_timeout_s`` (``faas.gateway.body``); headers have
the same deadline, and open connections are capped (``faas.gateway.guard``).
A client that goes away is answered quietly.

Callers: every request but the public ones (health, the API document) passes
``faas.gateway.auth`` first: a key (``Authorization: Bearer``) and a role
high enough for the path (``faas.gateway.access``), or 401/403 before any
handler runs. A server with no keys on loopback runs open.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route

from faas.config import Settings
from faas.executors.base import Executor
from faas.functions import Functions
from faas.gateway.auth import AuthMiddleware
from faas.gateway.body import describe
from faas.gateway.budget import ByteBudget
from faas.gateway.context import Gateway
from faas.gateway.openapi import DESCRIPTION, TITLE, document
from faas.gateway.responses import error_response
from faas.gateway.routes import RESOURCES
from faas.invocations.service import Invocations
from faas.logs import clip, request_id_var
from faas.orchestrator import Orchestrator
from faas.tenancy.authenticator import Authenticator
from faas.tenancy.enforcement import TenantQuotas
from faas.tenancy.principal import is_loopback

log = logging.getLogger("faas.gateway")


class GatewayApp(FastAPI):
    def openapi(self) -> dict[str, Any]:
        return document(self)


def create_app(settings: Settings, executors: Mapping[str, Executor],
               orchestrator: Orchestrator | None = None,
               unavailable: Mapping[str, str] | None = None,
               functions: Functions | None = None) -> GatewayApp:
    """Build the gateway around ``executors`` (already constructed; the app closes them).

    ``unavailable`` maps tiers that could not be built to the reason, for
    ``/readyz`` and for a clear 503 when a request names one. ``functions``:
    the deployed functions (opened by the caller, who closes them after the
    app); without them every id is ad hoc and ``/functions`` answers 503.
    """
    orch = orchestrator or Orchestrator(settings, executors, unavailable=unavailable,
                                        metrics=functions.metrics if functions else None)
    gateway = Gateway(settings, orch, ByteBudget(settings.body_budget_bytes), functions)
    gateway.authenticator = Authenticator(
        functions.store.tenants if functions is not None else None,
        open_allowed=settings.tenancy.insecure or is_loopback(settings.host))
    # Tenants' quotas: from each tenant's row when there is a store, else the defaults.
    store = functions.store if functions is not None else None
    gateway.quotas = TenantQuotas(settings, store.tenants.get_tenant if store else None,
                                  store.tenant_usage if store else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if functions is not None:
            await gateway.vault()  # a bad master key file stops the start, not a call
            gateway.invocations = await Invocations.open(settings, functions, orch,
                                                         gateway.call_secrets)
        try:
            yield
        finally:
            if gateway.invocations is not None:
                gateway.invocations.stop_claiming()
            await orch.shutdown(settings.shutdown_grace_s)
            if gateway.invocations is not None:
                await gateway.invocations.close(settings.shutdown_grace_s)

    app = GatewayApp(
        title=TITLE, description=DESCRIPTION, lifespan=lifespan,
        openapi_url="/openapi.json", docs_url="/docs", redoc_url=None,
        exception_handlers={HTTPException: http_error, RequestValidationError: invalid_request,
                            Exception: internal_error},
    )
    for add_routes in RESOURCES:
        add_routes(app.router, gateway)
    app.add_middleware(AuthMiddleware, authenticator=gateway.authenticator)
    app.state.orchestrator = orch
    app.state.body_budget = gateway.budget
    return app


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's 404 and 405 (and any other HTTPException) as ``{"error": ...}``."""
    method, path = clip(request.method, 20), clip(request.url.path, 200)
    if exc.status_code == 404:
        return error_response(404, f"no route for {method} {path}")
    if exc.status_code == 405:
        return error_response(405, f"method {method} not allowed here",
                              headers={"allow": ", ".join(allowed_methods(request))})
    return error_response(exc.status_code, clip(exc.detail, 300), headers=exc.headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this path (each route may carry only some)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)


async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """FastAPI's validation of declared parameters: a 400 like the gateway's own checks."""
    return error_response(400, describe(exc.errors()), request_id_var.get())


async def internal_error(request: Request, exc: Exception) -> Response:
    # A bug, not a FaasError: log it whole, answer JSON like every other error.
    if isinstance(exc, ClientDisconnect):
        log.debug("client disconnected on %s", request.method)
        return Response(status_code=499)
    log.error("unhandled error on %s %s", request.method, clip(request.url.path, 200),
              exc_info=exc)
    return error_response(500, "internal server error", request_id_var.get())
