"""``faas deploy [DIR]``: the folder's code and ``faas.toml``, as a new version of the function.

The spec comes from ``DIR/faas.toml`` (format: ``faas.client.manifest``) with
the flags over it (``--label``/``--env`` add to its tables); the name defaults
to the folder's. The folder, less the excluded entries, is packed
deterministically (``faas.bundles.pack_folder``) and uploaded with the spec
in one multipart ``PUT /functions/{name}``; ``--no-bundle`` sends the spec
alone. Prints the new version.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from faas.cli.common import (
    EXIT_SERVER,
    RAW_HELP,
    add_url_flag,
    key_values,
    open_client,
    plain,
    print_json,
)
from faas.client import load_manifest, pack_function_folder
from faas.errors import ValidationError

#: flag destination -> spec key, for the flags that set one value.
_SCALAR_FLAGS = {"executor": "executor", "image": "image", "timeout": "timeout_s",
                 "memory": "memory_mb", "vcpus": "vcpus", "max_concurrency": "max_concurrency",
                 "description": "description", "content_type": "content_type"}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dep = sub.add_parser("deploy", help="deploy a function folder (its faas.toml, or flags)",
                         description=plain(__doc__), formatter_class=RAW_HELP)
    dep.add_argument("folder", nargs="?", default=".", metavar="DIR",
                     help="the function's folder (default: the current one)")
    add_url_flag(dep)
    dep.add_argument("--name", help="the function id (default: faas.toml's, else DIR's name)")
    dep.add_argument("--command", help="the command, split like a shell would: "
                                       "'python3 /function/handler.py'")
    dep.add_argument("--executor")
    dep.add_argument("--image")
    dep.add_argument("--timeout", type=float, metavar="S")
    dep.add_argument("--memory", type=int, metavar="MB")
    dep.add_argument("--vcpus", type=int)
    dep.add_argument("--max-concurrency", type=int, metavar="N")
    dep.add_argument("--description")
    dep.add_argument("--content-type")
    dep.add_argument("--label", action="append", metavar="KEY=VALUE", help="repeat")
    dep.add_argument("--env", action="append", metavar="KEY=VALUE", help="repeat; not secrets")
    dep.add_argument("--exclude", action="append", metavar="GLOB",
                     help="also leave these out of the bundle (repeat)")
    dep.add_argument("--no-bundle", action="store_true", help="send the spec without code")
    dep.add_argument("--json", action="store_true", help="print the whole version object")
    dep.set_defaults(fn=deploy_command, client_error_status=EXIT_SERVER)


def deploy_command(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    if not folder.is_dir():
        raise ValidationError(f"{args.folder}: not a folder")
    manifest = load_manifest(folder)
    name = args.name or manifest.name or folder.resolve().name
    spec = build_spec(manifest.spec, args)
    bundle = None
    if not args.no_bundle:
        bundle, _ = pack_function_folder(folder, (*manifest.exclude, *(args.exclude or [])))
    with open_client(args) as client:
        version = client.deploy(name, spec, bundle)
    if args.json:
        print_json(version)
    else:
        print(describe_version(version))
    return 0


def build_spec(base: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The spec of ``faas.toml`` with the flags over it; ``command`` is required."""
    spec = dict(base)
    if args.command is not None:
        try:
            spec["command"] = shlex.split(args.command)
        except ValueError as exc:
            raise ValidationError(f"--command: {exc}") from None
    for dest, key in _SCALAR_FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            spec[key] = value
    for flag, key in (("label", "labels"), ("env", "env_vars")):
        extra = key_values(getattr(args, flag), f"--{flag}")
        if extra:
            spec[key] = {**spec.get(key, {}), **extra}
    if not spec.get("command"):
        raise ValidationError("no command: set command in faas.toml or pass --command")
    return spec


def describe_version(version: dict[str, Any]) -> str:
    """``deployed hello version 3 (bundle sha256 0123456789ab, 1234 bytes packed)``."""
    line = f"deployed {version.get('id')} version {version.get('version')}"
    bundle = version.get("bundle")
    if isinstance(bundle, dict):
        sha = str(bundle.get("sha256", ""))[:12]
        line += f" (bundle sha256 {sha}, {bundle.get('packed_bytes')} bytes packed)"
    return line
