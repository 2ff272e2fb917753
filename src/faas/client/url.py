"""Which server a client command talks to.

``--url`` wins, else ``FAAS_URL``, else the address ``faas serve`` listens on
with the same settings (``FAAS_HOST``, ``FAAS_GATEWAY_PORT``). A wildcard
listen address (``0.0.0.0``, ``::``, empty) means "this host" to a client:
its loopback address.
"""

from __future__ import annotations

from faas.config import Settings
from faas.config_vars import parse_url
from faas.errors import ValidationError

_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


def resolve_url(flag: str | None, settings: Settings) -> str:
    """The server's base URL, without a trailing slash."""
    if flag:
        try:
            return parse_url(flag)
        except ValueError as exc:
            raise ValidationError(f"--url {flag[:100]!r}: {exc}") from None
    if settings.url:
        return settings.url
    host = _LOOPBACK.get(settings.host, settings.host)
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"
