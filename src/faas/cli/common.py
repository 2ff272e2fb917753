"""What the client commands share: finding the server, ``KEY=VALUE`` flags, exit statuses.

Exit statuses of every command: 0 success; ``EXIT_USAGE`` (2) a bad argument,
``faas.toml`` or environment variable; ``EXIT_SERVER`` (1) the server refused
or failed, or none answered. ``faas invoke`` instead exits with the function's
own status, ``EXIT_TIMEOUT`` (124, as ``timeout(1)``) when its deadline passed,
and ``EXIT_PLATFORM`` (125, as ``timeout(1)`` when it fails itself) when the
platform refused, failed or could not be reached; ``faas invocations wait``
exits as ``faas invoke`` would have (``record_exit_status``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Mapping
from typing import Any, TypeGuard

from faas.client import FaasClient, resolve_url
from faas.config import Settings
from faas.errors import ValidationError
from faas.tenancy.keys import KEY_PATTERN

EXIT_SERVER = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_PLATFORM = 125

#: An invocation record in one of these never changes again.
FINAL_STATUSES = ("succeeded", "failed", "timed_out", "error", "cancelled")
STATUSES = ("queued", "running", *FINAL_STATUSES)


#: With ``plain(__doc__)``: a command's module docstring as its ``--help`` description.
RAW_HELP = argparse.RawDescriptionHelpFormatter


def plain(doc: str | None) -> str:
    """A docstring without its reStructuredText literal quotes."""
    return (doc or "").replace("``", "")


def add_url_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the server (default: FAAS_URL, else "
                                      "http://FAAS_HOST:FAAS_GATEWAY_PORT)")
    parser.add_argument("--key-file", help="a file holding the API key (default: "
                                           "FAAS_API_KEY; a key is never taken on argv)")


def open_client(args: argparse.Namespace) -> FaasClient:
    """A client of the server named by ``--url``, ``FAAS_URL`` or the serve settings, with
    the key of ``--key-file`` or ``FAAS_API_KEY``."""
    settings = Settings.from_env()
    key = settings.api_key
    if getattr(args, "key_file", None):
        try:
            with open(args.key_file, encoding="ascii") as handle:
                key = handle.read(512).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError(f"cannot read the key file ({type(exc).__name__})") from None
        if not KEY_PATTERN.fullmatch(key):
            raise ValidationError("the key file does not hold an API key (faas_...)")
    return FaasClient(resolve_url(args.url, settings), api_key=key or None)


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


def function_exit_status(result: Mapping[str, Any]) -> int | None:
    """The function's own exit status: 128+N when signal N killed it (as a shell, and as
    ``X-Faas-Exit-Code``), else its exit code; ``None`` when it has neither."""
    sig, code = result.get("signal"), result.get("exit_code")
    if _is_int(sig):
        return 128 + sig
    return code if _is_int(code) else None


def record_exit_status(record: Mapping[str, Any]) -> int:
    """What ``faas invoke`` would have exited with, from a final invocation record."""
    status = record.get("status")
    if status == "succeeded":
        return 0
    if status == "timed_out":
        return EXIT_TIMEOUT
    own = function_exit_status(record) if status == "failed" else None
    return own if own else EXIT_PLATFORM  # a "failed" call that says 0 did not succeed


def write_output(result: Mapping[str, Any]) -> None:
    """A result's stdout and stderr to ours, byte for byte (``*_base64`` when it has them)."""
    for stream, name in ((sys.stdout, "stdout"), (sys.stderr, "stderr")):
        encoded = result.get(f"{name}_base64")
        try:
            data = (base64.b64decode(encoded, validate=True) if isinstance(encoded, str)
                    else str(result.get(name) or "").encode())
        except (binascii.Error, ValueError):
            data = str(result.get(name) or "").encode()
        stream.flush()
        stream.buffer.write(data)
        stream.buffer.flush()


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
