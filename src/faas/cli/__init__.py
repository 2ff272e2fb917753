"""The ``faas`` command, one module a command group.

    serve, doctor, image           faas.cli.server     (the host side)
    deploy                         faas.cli.deploy     a folder and its faas.toml -> a version
    functions ls|show|rm           faas.cli.functions
    invoke                         faas.cli.invoke     stdin -> payload; exit status: the function's
    invocations ls|show|wait|cancel
                                   faas.cli.invocations  the records of calls (invoke --async)
    new python NAME                faas.cli.new        a function folder to start from
    admin create-tenant|create-key|list-keys|revoke-key|set-quotas|list-tenants|
          rotate-secret-key        faas.cli.admin      on the store directly (bootstrap)

Client commands find the server from ``--url``, ``FAAS_URL``, or the address
``faas serve`` would listen on (``faas.client.url``); their exit statuses are
listed in ``faas.cli.common``. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys

from faas.cli import admin, deploy, functions, invocations, invoke, new, server
from faas.cli.common import EXIT_USAGE
from faas.errors import ApiError, ClientError, FaasError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faas", description="Run untrusted code in a fresh sandbox per call, behind an "
                                 "HTTP gateway; deploy and call functions.")
    # What a command does not set itself: client errors are usage errors, and a
    # broken stdout pipe ends the command quietly (only `serve` keeps SIGPIPE ignored).
    parser.set_defaults(client_error_status=EXIT_USAGE, keeps_sigpipe_ignored=False)
    sub = parser.add_subparsers(dest="cmd", required=True)
    server.add_parsers(sub)
    deploy.add_parser(sub)
    functions.add_parser(sub)
    invoke.add_parser(sub)
    invocations.add_parser(sub)
    new.add_parser(sub)
    admin.add_parser(sub)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; ``faas invoke``'s ad hoc command is everything after ``--``.

    (argparse alone would bind an empty command right after NAME and then
    refuse the words after ``--`` when options stand between them.) A command's
    ``check_args`` default then refuses what argparse cannot (exit 2, as argparse).
    """
    parser = build_parser()
    if argv[:1] == ["invoke"] and "--" in argv:
        cut = argv.index("--")
        args = parser.parse_args(argv[:cut])
        args.command = [*args.command, *argv[cut + 1:]]
    else:
        args = parser.parse_args(argv)
    check = getattr(args, "check_args", None)
    if check is not None:
        check(args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.keeps_sigpipe_ignored:
        # A client command piped into `head` should end quietly, as other tools do.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        code: int = args.fn(args)
    except ClientError as exc:
        print(f"faas {args.cmd}: {exc}", file=sys.stderr)
        if isinstance(exc, ApiError):
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
        return int(args.client_error_status)
    except FaasError as exc:
        print(f"faas: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    return code
