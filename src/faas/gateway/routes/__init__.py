"""The gateway's resources, one module each: ``add_routes(api, gateway)`` declares the
resource's routes on the app's own router.

A new resource is a new module here plus one entry in ``RESOURCES``. (The
routes go straight onto the app's router rather than through
``include_router``, whose per-request matching of included routers costs
about 90 Python calls an invoke.)
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from faas.gateway.context import Gateway
from faas.gateway.routes import admin, functions, health, invocations, invoke, raw, secrets

RESOURCES: tuple[Callable[[APIRouter, Gateway], None], ...] = (
    invoke.add_routes, raw.add_routes, functions.add_routes, invocations.add_routes,
    health.add_routes, admin.add_routes, secrets.add_routes)
