"""Which role each route needs: one table, denying by default.

``required_role(method, path)`` is asked before routing (by
``faas.gateway.auth``): None for the few public paths (health, the API
document), else the least role that may call. A path no rule names needs
``ADMIN``: a route added without a rule here is closed, not open. Rules
match whole segments; ``*`` is one segment. Tenancy (which of the tenant's
things a caller sees) is the handlers' part, through ``current_principal``.
"""

from __future__ import annotations

from faas.tenancy.principal import Role

ANY = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
READ = frozenset({"GET", "HEAD"})

#: (methods, path pattern, role): the first match wins; None is public.
RULES: tuple[tuple[frozenset[str], tuple[str, ...], Role | None], ...] = (
    (READ, ("healthz",), None),
    (READ, ("readyz",), None),
    (READ, ("openapi.json",), None),
    (READ, ("docs",), None),
    (READ, ("metrics",), Role.ADMIN),
    (READ, ("whoami",), Role.INVOKER),
    (frozenset({"POST"}), ("functions", "*", "invoke"), Role.INVOKER),
    (frozenset({"POST"}), ("function", "*"), Role.INVOKER),
    (READ | {"DELETE"}, ("invocations",), Role.INVOKER),
    (READ | {"DELETE"}, ("invocations", "*"), Role.INVOKER),
    (READ, ("functions",), Role.DEVELOPER),
    (READ | {"PUT", "DELETE"}, ("functions", "*"), Role.DEVELOPER),
    (READ, ("functions", "*", "versions", "*"), Role.DEVELOPER),
    (READ, ("secrets",), Role.DEVELOPER),
    (READ | {"PUT", "DELETE"}, ("secrets", "*"), Role.DEVELOPER),
)


def required_role(method: str, path: str) -> Role | None:
    segments = tuple(path.strip("/").split("/"))
    for methods, pattern, role in RULES:
        if method in methods and len(pattern) == len(segments) and all(
                want == "*" or want == got for want, got in zip(pattern, segments, strict=True)):
            return role
    return Role.ADMIN
