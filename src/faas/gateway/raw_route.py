"""A route documented from its typed declaration but served without FastAPI's request parsing.

FastAPI builds a route's OpenAPI operation from its parameters and solves
them on every request (about as much CPU as the rest of an invoke's gateway
work together), and a body parameter would read the whole body before the
route's own budget and deadlines apply. A ``RawRoute`` is declared like any
route, its parameters as a dependency, so the document is generated the
same way; but its endpoint is called with the bare ``Request`` and parses
and checks what it needs itself. ``tests/unit/test_openapi.py`` holds the
declaration and the checks together.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class RawRoute(APIRoute):
    def get_route_handler(self) -> Endpoint:
        endpoint: Endpoint = self.endpoint
        return endpoint
