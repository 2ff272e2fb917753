"""What the client commands share: finding the server, ``KEY=VALUE`` flags, exit statuses.

Exit statuses of every command: 0 success; ``EXIT_USAGE`` (2) a bad argument,
``faas.toml`` or environment variable; ``EXIT_SERVER`` (1) the server refused
or failed, or none answered. ``faas invoke`` instead exits with the function's
own status, ``EXIT_TIMEOUT`` (124, as ``timeout(1)``) when its deadline passed,
and ``EXIT_PLATFORM`` (125, as ``timeout(1)`` when it fails itself) when the
platform refused, failed or could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from faas.client import FaasClient, resolve_url
from faas.config import Settings
from faas.errors import ValidationError

EXIT_SERVER = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_PLATFORM = 125


#: With ``plain(__doc__)``: a command's module docstring as its ``--help`` description.
RAW_HELP = argparse.RawDescriptionHelpFormatter


def plain(doc: str | None) -> str:
    """A docstring without its reStructuredText literal quotes."""
    return (doc or "").replace("``", "")


def add_url_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the server (default: FAAS_URL, else "
                                      "http://FAAS_HOST:FAAS_GATEWAY_PORT)")


def open_client(args: argparse.Namespace) -> FaasClient:
    """A client of the server named by ``--url``, ``FAAS_URL`` or the serve settings."""
    return FaasClient(resolve_url(args.url, Settings.from_env()))


def key_values(entries: list[str] | None, flag: str) -> dict[str, str]:
    """``["K=V", ...]`` of a repeated flag as a dict (a later key wins)."""
    found: dict[str, str] = {}
    for entry in entries or []:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise ValidationError(f"{flag} {entry[:100]!r}: expected KEY=VALUE")
        found[key] = value
    return found


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
