"""The gateway's resources, one module each: ``router(gateway) -> APIRouter``.

A new resource is a new module here plus one entry in ``ROUTERS``.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from faas.gateway.context import Gateway
from faas.gateway.routes import health, invoke

ROUTERS: tuple[Callable[[Gateway], APIRouter], ...] = (invoke.router, health.router)
