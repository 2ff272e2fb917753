"""``faas invocations ls|show|wait|cancel``: the records of calls (``faas invoke --async``).

    ls [--function F] [--status S] [--since T] [--limit N] [--all]   newest first
    show ID                   the record: status, timings, stdout and stderr
    wait ID [--timeout S]     until it is final; then writes its stdout and stderr and
                              exits as ``faas invoke`` would have (0, its exit code,
                              128+N for signal N, 124 timed out, 125 error or cancelled);
                              124 and a line on stderr when ``--timeout`` passes first
    cancel ID                 stops a queued or running call; prints its new status
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from faas.cli.common import (
    EXIT_PLATFORM,
    EXIT_SERVER,
    EXIT_TIMEOUT,
    FINAL_STATUSES,
    RAW_HELP,
    STATUSES,
    add_url_flag,
    open_client,
    plain,
    print_json,
    record_exit_status,
    write_output,
)
from faas.errors import ApiError, ValidationError

#: The longest single long poll ``wait`` asks for (the server allows up to 60 s).
POLL_S = 30.0
#: ``wait`` never asks again sooner than this after its last question.
MIN_POLL_S = 0.5
#: ``ls --all`` stops here: at the server's largest page, 200 000 records.
MAX_PAGES = 1000


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    inv = sub.add_parser("invocations", help="list, show, wait for or cancel the records of "
                                             "calls (faas invoke --async)",
                         description=plain(__doc__), formatter_class=RAW_HELP)
    verbs = inv.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("ls", help="the invocation records, newest first")
    add_url_flag(ls)
    ls.add_argument("--function", metavar="F", help="only this function's")
    ls.add_argument("--status", choices=STATUSES, help="only those in this status")
    ls.add_argument("--since", metavar="T", help="only those accepted at or after T "
                                                 "(ISO 8601 or epoch seconds)")
    ls.add_argument("--limit", type=int, metavar="N", help="records a page (server: 1..200, "
                                                           "default 50)")
    ls.add_argument("--all", action="store_true", help="follow next_cursor to the last page")
    ls.add_argument("--json", action="store_true",
                    help='the JSON page, {"items": [...], "next_cursor": ...}')
    ls.set_defaults(fn=ls_command, client_error_status=EXIT_SERVER)
    show = verbs.add_parser("show", help="one record, with its stdout and stderr")
    show.add_argument("invocation_id", metavar="ID")
    add_url_flag(show)
    show.add_argument("--json", action="store_true", help="the record's JSON")
    show.set_defaults(fn=show_command, client_error_status=EXIT_SERVER)
    wait = verbs.add_parser("wait", help="wait until it is final; write its output and exit "
                                         "with its status, as faas invoke")
    wait.add_argument("invocation_id", metavar="ID")
    add_url_flag(wait)
    wait.add_argument("--timeout", type=float, metavar="S",
                      help="give up after S seconds (exit 124; default: wait on)")
    wait.set_defaults(fn=wait_command, client_error_status=EXIT_PLATFORM)
    cancel = verbs.add_parser("cancel", help="cancel a queued or running call")
    cancel.add_argument("invocation_id", metavar="ID")
    add_url_flag(cancel)
    cancel.set_defaults(fn=cancel_command, client_error_status=EXIT_SERVER)


def ls_command(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        page = client.invocations(function=args.function, status=args.status,
                                  since=args.since, limit=args.limit)
        items = list(_items(page))
        seen: set[str] = set()
        while args.all and (cursor := page.get("next_cursor")):
            if cursor in seen:  # a server that loops must not make us loop forever
                raise ApiError(f"the server repeated the list cursor {str(cursor)[:40]!r}")
            if len(seen) + 1 >= MAX_PAGES:
                raise ApiError(f"stopped after {MAX_PAGES} pages; narrow it with --function, "
                               f"--status or --since")
            seen.add(cursor)
            page = client.invocations(function=args.function, status=args.status,
                                      since=args.since, limit=args.limit, cursor=cursor)
            items += _items(page)
    if args.json:
        print_json({"items": items, "next_cursor": page.get("next_cursor")})
        return 0
    rows = [("ID", "FUNCTION", "VERSION", "STATUS", "ACCEPTED", "DURATION_MS")]
    rows += [(str(i.get("id")), str(i.get("function_id")), _or_dash(i.get("version")),
              str(i.get("status")), str(i.get("accepted_at") or "-"),
              _or_dash(i.get("duration_ms"))) for i in items]
    widths = [max(len(row[col]) for row in rows) for col in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
              + "  " + row[5])
    if not args.all and page.get("next_cursor"):
        print("(more: --all, or --json for next_cursor)", file=sys.stderr)
    return 0


def show_command(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        record = client.invocation(args.invocation_id)
    if args.json:
        print_json(record)
    else:
        print(describe_invocation(record))
    return 0


def wait_command(args: argparse.Namespace) -> int:
    if args.timeout is not None and args.timeout < 0:
        raise ValidationError("--timeout: expected seconds >= 0")
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    with open_client(args) as client:
        while True:
            asked_at = time.monotonic()
            remaining = POLL_S if deadline is None else deadline - asked_at
            record = client.invocation(args.invocation_id,
                                       wait_s=round(max(0.0, min(remaining, POLL_S)), 3))
            status = record.get("status")
            if status in FINAL_STATUSES:
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                print(f"faas invocations: {args.invocation_id} is still {status} after "
                      f"{args.timeout:g} s", file=sys.stderr)
                return EXIT_TIMEOUT
            # A server that answers before the wait it was asked for must not make us spin.
            pause = MIN_POLL_S - (now - asked_at)
            if pause > 0:
                time.sleep(pause if deadline is None else min(pause, deadline - now))
    write_output(record)
    code = record_exit_status(record)
    if status in ("timed_out", "error", "cancelled") or code == EXIT_PLATFORM:
        # No status of the function's own: say why, as faas invoke does.
        print(f"faas invocations: {args.invocation_id} {status}"
              + (f": {record['error']}" if record.get("error") else ""), file=sys.stderr)
    return code


def cancel_command(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        record = client.cancel_invocation(args.invocation_id)
    print(record.get("status"))
    return 0


def describe_invocation(record: dict[str, Any]) -> str:
    """A record as ``key: value`` lines a person reads, then its stdout and stderr."""
    version = record.get("version")
    lines = [f"id: {record.get('id')}",
             f"function: {record.get('function_id')}"
             + (f" (version {version})" if version is not None else " (ad hoc)"),
             f"status: {record.get('status')}"]
    for key in ("mode", "request_id", "accepted_at", "started_at", "finished_at",
                "queue_wait_ms", "duration_ms", "executor", "exit_code", "signal", "error"):
        if record.get(key) is not None:
            lines.append(f"{key.replace('_', ' ')}: {record[key]}")
    start = record.get("start")
    if isinstance(start, dict):
        lines.append(f"start: {start.get('kind')}, {start.get('start_ms')} ms")
    if record.get("max_attempts"):
        lines.append(f"attempts: {record.get('attempts')} of {record['max_attempts']}")
    callback = record.get("callback")
    if isinstance(callback, dict):
        lines.append(f"callback: {callback.get('url')} {callback.get('state')} after "
                     f"{callback.get('attempts')} attempts"
                     + (f" ({callback['last_error']})" if callback.get("last_error") else ""))
    truncated = record.get("truncated") or {}
    for name in ("stdout", "stderr"):
        text = str(record.get(name) or "")
        if text:
            cut = " (truncated)" if isinstance(truncated, dict) and truncated.get(name) else ""
            lines += [f"--- {name}{cut} ---", text.rstrip("\n")]
    return "\n".join(lines)


def _items(page: dict[str, Any]) -> list[dict[str, Any]]:
    items = page.get("items")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)
