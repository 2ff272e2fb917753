"""``faas functions ls|show|rm``: the deployed functions."""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any

from faas.cli.common import EXIT_SERVER, add_url_flag, key_values, open_client, print_json


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fns = sub.add_parser("functions", help="list, show or remove deployed functions")
    verbs = fns.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("ls", help="the deployed functions, one a line")
    add_url_flag(ls)
    ls.add_argument("--label", action="append", metavar="KEY=VALUE",
                    help="only functions with this label (repeat: all of them)")
    ls.add_argument("--json", action="store_true", help="a JSON list of the summaries")
    ls.set_defaults(fn=ls_command, client_error_status=EXIT_SERVER)
    show = verbs.add_parser("show", help="one function: its latest spec, bundle, versions")
    show.add_argument("name", metavar="NAME")
    add_url_flag(show)
    show.add_argument("--version", type=int, help="show this version instead of the function")
    show.add_argument("--json", action="store_true", help="the server's JSON")
    show.set_defaults(fn=show_command, client_error_status=EXIT_SERVER)
    rm = verbs.add_parser("rm", help="remove a function (every version)")
    rm.add_argument("name", metavar="NAME")
    add_url_flag(rm)
    rm.set_defaults(fn=rm_command, client_error_status=EXIT_SERVER)


def ls_command(args: argparse.Namespace) -> int:
    labels = key_values(args.label, "--label")
    with open_client(args) as client:
        items = list(client.list_functions(labels))
    if args.json:
        print_json(items)
        return 0
    rows = [("NAME", "VERSION", "UPDATED", "DESCRIPTION")]
    rows += [(str(i.get("id")), str(i.get("latest_version")), str(i.get("updated_at") or ""),
              str(i.get("description") or "")) for i in items]
    widths = [max(len(row[col]) for row in rows) for col in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
              + "  " + row[3])
    return 0


def show_command(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        data = (client.get_version(args.name, args.version) if args.version is not None
                else client.get_function(args.name))
    if args.json:
        print_json(data)
    else:
        print(describe_function(data))
    return 0


def rm_command(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        client.delete_function(args.name)
    print(f"removed {args.name}")
    return 0


def describe_function(data: dict[str, Any]) -> str:
    """A function (or one version) as ``key: value`` lines a person reads."""
    lines = [f"name: {data.get('id')}"]
    if "latest_version" in data:
        versions = data.get("versions") or []
        lines.append(f"version: {data.get('latest_version')} (of {len(versions)})")
    else:
        lines.append(f"version: {data.get('version')}")
    for key in ("created_at", "updated_at"):
        if data.get(key):
            lines.append(f"{key.replace('_', ' ')}: {data[key]}")
    spec = data.get("spec") or {}
    for key, value in spec.items():
        if value is None or value == {} or value == []:
            continue
        shown = shlex.join(value) if key == "command" and isinstance(value, list) else (
            json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value)
        lines.append(f"{key}: {shown}")
    bundle = data.get("bundle")
    if isinstance(bundle, dict):
        lines.append(f"bundle: sha256 {bundle.get('sha256')}, {bundle.get('packed_bytes')} "
                     f"bytes packed, {bundle.get('unpacked_bytes')} unpacked")
    else:
        lines.append("bundle: none")
    counts = data.get("invocations")
    if isinstance(counts, dict) and counts:
        lines.append("invocations: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)
