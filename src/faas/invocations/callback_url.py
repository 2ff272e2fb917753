"""The ``X-Callback-Url`` of an async invocation: its syntax, and where it may point.

``parse_callback_url`` checks the text only (http or https, a host, no
userinfo, no fragment, a port in range, at most ``MAX_CALLBACK_URL_CHARS``).
``check_callback_target`` resolves the host and refuses, unless private
targets are allowed, a host with ANY address that is not on the public
internet: loopback, link-local, private (RFC 1918, ULA), shared (100.64/10),
site-local, unspecified, multicast, reserved, and the IPv6 forms that embed
one of those IPv4 addresses (mapped, IPv4-compatible, 6to4, NAT64, Teredo).
The gateway checks at accept time; the sender checks again at every delivery
and connects to the checked address (a name may be re-pointed in between).

Messages never echo more than ``_ECHO_CHARS`` of the URL, and never a
resolved address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from faas.errors import ValidationError

MAX_CALLBACK_URL_CHARS = 2048
_ECHO_CHARS = 100
_SCHEMES = {"http": 80, "https": 443}
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_MAX_HOST_CHARS = 253
#: NAT64's well-known prefix (RFC 6052): the last 32 bits are an IPv4 address.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: IPv4-compatible (deprecated) and IPv4-translated (SIIT) forms.
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_V4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class CallbackUrl:
    """A syntactically valid callback URL; ``host`` is lowercase, without brackets."""

    scheme: str
    host: str
    port: int
    #: the path (``/`` if empty) and the ``?query``, as given
    path_and_query: str
    original: str

    @property
    def host_literal(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The host as an IP address when it is one, else None."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def authority(self) -> str:
        """``host[:port]`` as the ``Host`` header wants it (brackets for IPv6, no default port)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _SCHEMES[self.scheme] else f"{host}:{self.port}"


def _clip(raw: str) -> str:
    text = raw if len(raw) <= _ECHO_CHARS else raw[:_ECHO_CHARS] + "..."
    return ascii(text)


def parse_callback_url(raw: str) -> CallbackUrl:
    """The URL's parts; ``ValidationError`` naming the first problem found."""
    if len(raw) > MAX_CALLBACK_URL_CHARS:
        raise ValidationError(f"callback URL is longer than {MAX_CALLBACK_URL_CHARS} characters")
    if not raw:
        raise ValidationError("callback URL is empty")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise ValidationError(f"callback URL contains whitespace or control characters: "
                              f"{_clip(raw)}")
    if not raw.isascii():
        raise ValidationError(f"callback URL must be ASCII (percent-encode the path, use the "
                              f"xn-- form of the host): {_clip(raw)}")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ValidationError(f"callback URL is malformed or its port is out of range: "
                              f"{_clip(raw)}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValidationError(f"callback URL must be http or https: {_clip(raw)}")
    if "@" in parts.netloc:
        raise ValidationError("callback URL must not carry a user name or password")
    if parts.fragment or "#" in raw:
        raise ValidationError(f"callback URL must not have a #fragment: {_clip(raw)}")
    if port == 0 or parts.netloc.endswith(":"):
        raise ValidationError(f"callback URL port must be 1 to 65535: {_clip(raw)}")
    host = _checked_host(parts.netloc, parts.hostname or "", raw)
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query or raw.endswith("?") else ""
    return CallbackUrl(scheme=scheme, host=host, port=port or _SCHEMES[scheme],
                       path_and_query=path + query, original=raw)


def _checked_host(netloc: str, hostname: str, raw: str) -> str:
    if not hostname:
        raise ValidationError(f"callback URL has no host: {_clip(raw)}")
    if netloc.startswith("["):
        try:
            address = ipaddress.IPv6Address(hostname)
        except ValueError:
            raise ValidationError(f"callback URL has a malformed IPv6 host: "
                                  f"{_clip(raw)}") from None
        if address.scope_id is not None:
            raise ValidationError("callback URL must not carry an IPv6 zone id")
        return str(address)
    name = hostname.removesuffix(".")
    labels = name.split(".")
    if len(name) > _MAX_HOST_CHARS or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ValidationError(f"callback URL has an invalid host name: {_clip(raw)}")
    return hostname


def forbidden_reason(address: IPAddress) -> str | None:
    """Why a callback must not go to ``address`` (a short category), or None if it may."""
    embedded = _embedded_ipv4(address)
    inner = _forbidden_reason_plain(embedded) if embedded is not None else None
    if inner is not None:
        return f"{inner}, IPv4 in an IPv6 form"
    return _forbidden_reason_plain(address)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (and is routed to), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or address in _V4_COMPATIBLE or address in _V4_TRANSLATED:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def _forbidden_reason_plain(address: IPAddress) -> str | None:
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_unspecified, "unspecified"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "site-local"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "non-public"),
    )
    return next((reason for flagged, reason in checks if flagged), None)


async def check_callback_target(url: CallbackUrl, allow_private: bool,
                                timeout_s: float = 2.0) -> list[IPAddress]:
    """Every address the host has (an IP literal as is), each one allowed.

    ``ValidationError`` if the host does not resolve in ``timeout_s``, or if
    ``allow_private`` is false and any address is not a public one.
    """
    literal = url.host_literal
    addresses = [literal] if literal is not None else await _resolve(url, timeout_s)
    if not allow_private:
        for address in addresses:
            reason = forbidden_reason(address)
            if reason is not None:
                raise ValidationError(f"callback URL host is not allowed: it is or resolves "
                                      f"to an address that is not public ({reason})")
    return addresses


async def _resolve(url: CallbackUrl, timeout_s: float) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM,
                                           proto=socket.IPPROTO_TCP)
    except TimeoutError:
        raise ValidationError("callback URL host did not resolve in time") from None
    except (OSError, UnicodeError):
        raise ValidationError("callback URL host does not resolve") from None
    addresses: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = str(sockaddr[0]).partition("%")[0]  # a link-local answer may carry a zone
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ValidationError("callback URL host does not resolve")
    return addresses
