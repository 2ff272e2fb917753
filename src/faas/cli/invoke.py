"""``faas invoke NAME [-- COMMAND ...]``: stdin is the payload, the exit status is the function's.

Without a command it calls the deployed function ``NAME`` (``--version``
pins one); with one (after ``--``) it runs that command ad hoc under the id
``NAME``, as the seed's API does. Either way the function's stdout and
stderr are written, byte for byte, to ours, and the exit status is its own:
124 when its deadline passed, 125 when the platform refused or failed (the
server's ``error`` is printed), 128+N when signal N killed it (as a shell).

With ``--async`` it only queues the call and prints its invocation id (the
whole 202 answer with ``--json``); ``faas invocations wait ID`` then writes
its output and exits with its status as above. ``--callback-url`` (the
server POSTs the finished record there) and ``--idempotency-key`` (the same
key for the same function within 24 h answers with the first call's id and
never runs it twice) need ``--async``.
"""

from __future__ import annotations

import argparse
import base64
import functools
import sys
from pathlib import Path
from typing import Any

from faas.cli.common import (
    EXIT_PLATFORM,
    EXIT_TIMEOUT,
    RAW_HELP,
    add_url_flag,
    function_exit_status,
    open_client,
    plain,
    print_json,
    write_output,
)
from faas.errors import ApiError, ValidationError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    inv = sub.add_parser(
        "invoke", help="call a deployed function (or, after --, run a command ad hoc); stdin or "
                       "--payload-file is the payload; exits with the function's status",
        description=plain(__doc__), formatter_class=RAW_HELP)
    inv.add_argument("function_id", metavar="NAME")
    inv.add_argument("command", nargs="*",
                     help="ad hoc: the command and its arguments (put them after --)")
    add_url_flag(inv)
    inv.add_argument("--version", type=int, help="a deployed function's version (default: "
                                                 "the latest)")
    inv.add_argument("--payload-file", help="read the payload from this file, not stdin")
    inv.add_argument("--env", action="append", metavar="KEY=VALUE",
                     help="an environment variable (repeat); over the function's own")
    inv.add_argument("--timeout", type=float, metavar="S", help="deadline in seconds")
    inv.add_argument("--memory", type=int, metavar="MB", help="memory limit, MiB")
    inv.add_argument("--vcpus", type=int, help="vCPUs (microVM tiers)")
    inv.add_argument("--executor", help="ad hoc only: the isolation tier")
    inv.add_argument("--image", help="ad hoc only: the image (docker tier)")
    inv.add_argument("--json", action="store_true", help="print the whole JSON result")
    inv.add_argument("--async", dest="run_async", action="store_true",
                     help="queue the call and print its invocation id (see faas invocations)")
    inv.add_argument("--callback-url", metavar="URL",
                     help="with --async: the server POSTs the finished record to this URL")
    inv.add_argument("--idempotency-key", metavar="KEY",
                     help="with --async: a retry with the same key gets the first call's id")
    inv.set_defaults(fn=invoke_command, client_error_status=EXIT_PLATFORM,
                     check_args=functools.partial(_check_args, inv))


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse cannot say itself: the flags that need ``--async`` (exits 2)."""
    if not args.run_async:
        for flag, value in (("--callback-url", args.callback_url),
                            ("--idempotency-key", args.idempotency_key)):
            if value is not None:
                parser.error(f"{flag} needs --async")


def invoke_command(args: argparse.Namespace) -> int:
    body = _request_body(args, _payload(args))
    if args.run_async:
        return _invoke_async(args, body)
    with open_client(args) as client:
        status, result = client.invoke(args.function_id, body, version=args.version,
                                       timeout_s=args.timeout)
    if args.json:
        print_json(result)
    else:
        write_output(result)
    timed_out = status == 504 or result.get("timed_out") is True
    code = None if timed_out else function_exit_status(result)
    if code is None:
        # No status of the function's own: say why (its non-zero exits speak for themselves).
        if not args.json and result.get("error"):
            print(f"faas invoke: {result['error']}", file=sys.stderr)
        return EXIT_TIMEOUT if timed_out else EXIT_PLATFORM
    return code


def _invoke_async(args: argparse.Namespace, body: dict[str, Any]) -> int:
    with open_client(args) as client:
        accepted = client.invoke_async(args.function_id, body, version=args.version,
                                       callback_url=args.callback_url,
                                       idempotency_key=args.idempotency_key)
    if args.json:
        print_json(accepted)
        return 0
    invocation_id = accepted.get("invocation_id")
    if not isinstance(invocation_id, str) or not invocation_id:
        raise ApiError("the server accepted the call but named no invocation_id", 202)
    print(invocation_id)
    return 0


def _payload(args: argparse.Namespace) -> bytes:
    if args.payload_file:
        try:
            return Path(args.payload_file).read_bytes()
        except OSError as exc:
            raise ValidationError(f"--payload-file: {exc.strerror}: {args.payload_file}"
                                  ) from None
    if sys.stdin is None or sys.stdin.isatty():
        return b""
    return sys.stdin.buffer.read()


def _request_body(args: argparse.Namespace, payload: bytes) -> dict[str, Any]:
    body: dict[str, Any] = {"payload": base64.b64encode(payload).decode(),
                            "output_encoding": "base64"}
    if args.command:
        if args.version is not None:
            raise ValidationError("--version is for deployed functions, not an ad hoc command")
        body["command"] = args.command
        body["image"] = args.image or ""
        if args.executor:
            body["executor"] = args.executor
    elif args.executor or args.image:
        raise ValidationError("--executor and --image are for an ad hoc command (after --); "
                              "a deployed function has its own")
    if args.env:
        body["env_vars"] = list(args.env)
    for field, value in (("timeout_s", args.timeout), ("memory_mb", args.memory),
                         ("vcpus", args.vcpus)):
        if value is not None:
            body[field] = value
    return body
