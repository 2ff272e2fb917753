"""Authentication and authorization in front of every route (an ASGI middleware).

Before routing, the request's ``Authorization`` header is turned into a
``Principal`` (``faas.tenancy.authenticator``) and checked against the role
its path needs (``faas.gateway.access``): 401 without a valid key, 403 for a
role too low; neither reads the body or says whether anything exists. The
principal is then the handlers' through ``current_principal()`` (a context
variable set for the request's task); a handler that runs without one fails
closed with 401.
"""

from __future__ import annotations

from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

from faas.errors import Forbidden, Unauthenticated
from faas.gateway.access import required_role
from faas.gateway.responses import error_response
from faas.tenancy.authenticator import Authenticator
from faas.tenancy.principal import Principal

principal_var: ContextVar[Principal | None] = ContextVar("faas_principal", default=None)


def current_principal() -> Principal:
    """The caller of the request being handled; ``Unauthenticated`` if there is none."""
    principal = principal_var.get()
    if principal is None:
        raise Unauthenticated("no authenticated caller")
    return principal


def _authorization(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


class AuthMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        role = required_role(scope["method"], scope["path"])
        if role is None:
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.authenticator.authenticate(_authorization(scope))
            if not principal.may(role):
                raise Forbidden(f"this needs the {role.label} role; the key is "
                                f"{principal.role.label}")
        except (Unauthenticated, Forbidden) as exc:
            headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
            await error_response(exc.status, str(exc), headers=headers)(scope, receive, send)
            return
        token = principal_var.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            principal_var.reset(token)


__all__ = ["AuthMiddleware", "current_principal", "principal_var"]
