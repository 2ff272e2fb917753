"""``faas new python NAME``: a function folder to start from, ready for ``faas deploy NAME``.

Writes ``NAME/handler.py`` (JSON on stdin, JSON on stdout, exit status 1 on
bad input) and ``NAME/faas.toml`` whose command runs it from
``/function/handler.py``, where every tier shows the deployed bundle
read-only. Refuses to touch a folder that already exists.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from faas.cli.common import EXIT_USAGE, RAW_HELP, plain
from faas.errors import ValidationError

HANDLER = '''\
"""A faas function: the request is stdin, the answer is stdout, the exit status tells.

    echo '{"name": "Ada"}' | faas invoke __NAME__
    {"message": "Hello, Ada!", "shout": "HELLO, ADA!"}

The deployed folder is at /function (read-only); /tmp is writable.
"""

import json
import sys


def handle(request: dict) -> dict:
    name = str(request.get("name", "world"))
    return {"message": f"Hello, {name}!", "shout": f"HELLO, {name.upper()}!"}


def main() -> int:
    raw = sys.stdin.read()
    try:
        request = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        print(f"the request is not JSON: {exc}", file=sys.stderr)
        return 1
    if not isinstance(request, dict):
        print("the request must be a JSON object", file=sys.stderr)
        return 1
    json.dump(handle(request), sys.stdout)
    sys.stdout.write("\\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

MANIFEST = '''\
# faas deploy reads this file (format: src/faas/client/manifest.py); flags override it.
[function]
name = "__NAME__"
command = ["python3", "/function/handler.py"]
description = "says hello in JSON"
content_type = "application/json"
timeout_s = 10
memory_mb = 128
# executor = "sandbox"        # default: the server's
# exclude = ["tests"]         # besides .git, __pycache__, .venv, faas.toml

[function.labels]
template = "python"
'''

TEMPLATES = {"python": {"handler.py": HANDLER, "faas.toml": MANIFEST}}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    new = sub.add_parser("new", help="scaffold a function folder (faas new python NAME)",
                         description=plain(__doc__), formatter_class=RAW_HELP)
    new.add_argument("template", choices=sorted(TEMPLATES), help="the language")
    new.add_argument("name", metavar="NAME", help="the function id, and the folder to create")
    new.set_defaults(fn=new_command, client_error_status=EXIT_USAGE)


def new_command(args: argparse.Namespace) -> int:
    from faas.store.records import check_function_id

    check_function_id(args.name)
    folder = Path(args.name)
    try:
        folder.mkdir()
    except FileExistsError:
        raise ValidationError(f"{args.name} already exists; choose another name") from None
    for filename, text in TEMPLATES[args.template].items():
        (folder / filename).write_text(text.replace("__NAME__", args.name), encoding="utf-8")
    print(f"created {folder}/ ({', '.join(TEMPLATES[args.template])}); "
          f"deploy it with: faas deploy {args.name}")
    return 0
