"""``X-Callback-Url``: the syntax check, and the refusal of targets that are not public."""

from __future__ import annotations

import ipaddress

import pytest

from faas.errors import ValidationError
from faas.invocations.callback_url import (
    MAX_CALLBACK_URL_CHARS,
    CallbackUrl,
    check_callback_target,
    forbidden_reason,
    parse_callback_url,
)


@pytest.mark.parametrize(("raw", "expected"), [
    ("https://hooks.example.com/cb", CallbackUrl("https", "hooks.example.com", 443, "/cb",
                                                 "https://hooks.example.com/cb")),
    ("http://example.com", CallbackUrl("http", "example.com", 80, "/", "http://example.com")),
    ("HTTPS://Example.COM:8443/a/b?x=1&y=%20", CallbackUrl(
        "https", "example.com", 8443, "/a/b?x=1&y=%20", "HTTPS://Example.COM:8443/a/b?x=1&y=%20")),
    ("http://[2606:4700::1111]:65535/", CallbackUrl("http", "2606:4700::1111", 65535, "/",
                                                    "http://[2606:4700::1111]:65535/")),
    ("http://8.8.8.8:1/p", CallbackUrl("http", "8.8.8.8", 1, "/p", "http://8.8.8.8:1/p")),
    ("https://xn--bcher-kva.example/", CallbackUrl("https", "xn--bcher-kva.example", 443, "/",
                                                   "https://xn--bcher-kva.example/")),
])
def test_good_urls_are_parsed(raw: str, expected: CallbackUrl) -> None:
    assert parse_callback_url(raw) == expected


def test_the_length_bound_is_inclusive() -> None:
    base = "https://example.com/"
    exact = base + "a" * (MAX_CALLBACK_URL_CHARS - len(base))
    assert parse_callback_url(exact).original == exact
    with pytest.raises(ValidationError, match="longer than 2048"):
        parse_callback_url(exact + "a")


@pytest.mark.parametrize(("raw", "problem"), [
    ("", "empty"),
    ("ftp://example.com/", "http or https"),
    ("file:///etc/passwd", "http or https"),
    ("javascript:alert(1)", "http or https"),
    ("//example.com/", "http or https"),
    ("http:///path", "no host"),
    ("https://user:secret@example.com/", "user name or password"),
    ("https://user@example.com/", "user name or password"),
    ("https://example.com\\@evil.test/", "user name or password"),
    ("https://example.com/#frag", "fragment"),
    ("https://example.com/#", "fragment"),
    ("https://example.com:0/", "1 to 65535"),
    ("https://example.com:/", "1 to 65535"),
    ("https://example.com:65536/", "port"),
    ("https://example.com:-1/", "port"),
    ("https://example.com:http/", "port"),
    ("https://exa mple.com/", "whitespace"),
    ("https://example.com/\r\nX-Injected: 1", "whitespace or control"),
    ("https://example.com/\x00", "control"),
    ("https://example.com/\x7f", "control"),
    ("https://bücher.example/", "ASCII"),
    ("https://[::1/", "malformed"),
    ("https://[not-v6]/", "malformed"),
    ("https://[fe80::1%25eth0]/", "zone id"),
    ("https://a..b/", "invalid host"),
    ("https://-a.example/", "invalid host"),
    ("https://a_b!.example/", "invalid host"),
    ("https://" + "a" * 64 + ".example/", "invalid host"),
])
def test_bad_syntax_is_refused(raw: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        parse_callback_url(raw)


def test_userinfo_is_never_echoed_and_echoes_are_clipped() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_callback_url("https://admin:hunter2@example.com/")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        parse_callback_url("ftp://example.com/" + "x" * 1000)
    assert len(str(caught.value)) < 200


FORBIDDEN_LITERALS = [
    "127.0.0.1", "127.255.0.9", "0.0.0.0", "10.1.2.3", "172.16.0.1", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "100.127.255.254", "224.0.0.1", "224.0.1.1",
    "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "ff0e::1",
    "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
    "::127.0.0.1",                                                   # IPv4-compatible
    "2002:7f00:1::1", "2002:a00:1::", "2002:a9fe:a9fe::",            # 6to4 of loopback etc.
    "64:ff9b::127.0.0.1", "64:ff9b::a9fe:a9fe",                      # NAT64
]


def _literal_url(address: str) -> CallbackUrl:
    host = f"[{address}]" if ":" in address else address
    return parse_callback_url(f"https://{host}:8443/hook")


@pytest.mark.parametrize("address", FORBIDDEN_LITERALS)
async def test_non_public_literals_are_refused(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is not None
    with pytest.raises(ValidationError, match="not public"):
        await check_callback_target(_literal_url(address), allow_private=False)


@pytest.mark.parametrize("address", ["2002:7f00:1::1", "2002:a00:1::", "64:ff9b::a9fe:a9fe",
                                     "::ffff:127.0.0.1", "64:ff9b::127.0.0.1"])
def test_embedded_ipv4_is_judged_by_the_ipv4_address(address: str) -> None:
    """6to4 and NAT64 addresses count as global for ``ipaddress``: only the embedded
    IPv4 address shows where the packets go."""
    assert "IPv4 in an IPv6 form" in (forbidden_reason(ipaddress.ip_address(address)) or "")


@pytest.mark.parametrize("address", FORBIDDEN_LITERALS)
async def test_allow_private_lets_them_through(address: str) -> None:
    addresses = await check_callback_target(_literal_url(address), allow_private=True)
    assert addresses == [ipaddress.ip_address(address)]


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700::1111",
                                     "2002:808:808::1"])
async def test_public_literals_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None
    addresses = await check_callback_target(_literal_url(address), allow_private=False)
    assert addresses == [ipaddress.ip_address(address)]


@pytest.mark.parametrize("raw", ["http://localhost:8080/cb", "http://LocalHost:9/",
                                 "http://127.1/", "http://2130706433/", "http://0x7f000001/"])
async def test_names_and_numeric_forms_resolving_to_loopback_are_refused(raw: str) -> None:
    url = parse_callback_url(raw)
    with pytest.raises(ValidationError, match="not public"):
        await check_callback_target(url, allow_private=False)
    addresses = await check_callback_target(url, allow_private=True)
    assert addresses and all(a.is_loopback for a in addresses)


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    url = parse_callback_url("https://no-such-host.invalid/hook")
    for allow_private in (False, True):
        with pytest.raises(ValidationError, match="does not resolve"):
            await check_callback_target(url, allow_private=allow_private)
