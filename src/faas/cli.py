"""The ``faas`` command: ``serve``, ``invoke``, ``doctor``, ``image``."""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import signal
import sys
from pathlib import Path

from faas.config import Settings
from faas.errors import FaasError


def _serve(args: argparse.Namespace) -> int:
    from faas import logs
    from faas.executors.registry import build_executors
    from faas.functions import Functions
    from faas.gateway.app import create_app
    from faas.gateway.server import build_server
    from faas.metrics import Metrics

    settings = Settings.from_env()
    if args.port is not None:
        settings = dataclasses.replace(settings, port=args.port)
    if args.host is not None:
        settings = dataclasses.replace(settings, host=args.host)
    settings.check()
    logs.configure(settings.log_level)
    # A sandbox that exits without reading its stdin closes the pipe we write
    # to: that must be EPIPE on the write, never a signal that kills the server.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    async def main() -> int:
        executors, missing = await build_executors(settings)
        if settings.default_executor not in executors:
            why = missing.get(settings.default_executor, "not enabled")
            print(f"faas: default executor {settings.default_executor!r} is unusable: {why}",
                  file=sys.stderr)
            for executor in executors.values():
                await executor.aclose()
            return 2
        try:
            functions = await Functions.open(settings, Metrics())
        except FaasError as exc:
            print(f"faas: cannot open the store: {exc}", file=sys.stderr)
            for executor in executors.values():
                await executor.aclose()
            return 2
        app = create_app(settings, executors, unavailable=missing, functions=functions)
        server = build_server(app, settings)
        # uvicorn handles SIGTERM/SIGINT during serve() (stop accepting, drain,
        # run our lifespan shutdown) and re-raises the signal afterwards with
        # the previous handler restored: make that a no-op so a graceful stop
        # exits 0.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        try:
            await server.serve()
        finally:
            await functions.close()
        return 0

    return asyncio.run(main())


def _invoke(args: argparse.Namespace) -> int:
    import httpx

    if args.payload_file:
        payload = Path(args.payload_file).read_bytes()
    elif not sys.stdin.isatty():
        payload = sys.stdin.buffer.read()
    else:
        payload = b""
    body: dict[str, object] = {
        "image": args.image, "command": args.command, "env_vars": args.env or [],
        "payload": base64.b64encode(payload).decode(), "output_encoding": "base64",
    }
    if args.executor:
        body["executor"] = args.executor
    if args.timeout:
        body["timeout_s"] = args.timeout
    url = f"{args.url.rstrip('/')}/functions/{args.function_id}/invoke"
    try:
        response = httpx.post(url, json=body, timeout=(args.timeout or 300) + 30)
    except httpx.HTTPError as exc:
        print(f"faas invoke: cannot reach {url}: {exc}", file=sys.stderr)
        return 2
    try:
        data = response.json()
    except json.JSONDecodeError:
        print(f"faas invoke: HTTP {response.status_code}: {response.text[:500]}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        if "stdout_base64" in data:
            sys.stdout.buffer.write(base64.b64decode(data["stdout_base64"]))
            sys.stderr.buffer.write(base64.b64decode(data["stderr_base64"]))
            sys.stdout.flush()
        if data.get("error"):
            print(f"faas invoke: HTTP {response.status_code}: {data['error']}", file=sys.stderr)
    if response.status_code != 200:
        return 2 if response.status_code != 504 else 124
    code = data.get("exit_code")
    return code if isinstance(code, int) else 1


def _doctor(args: argparse.Namespace) -> int:
    from faas.executors.registry import availability

    settings = Settings.from_env()

    async def main() -> int:
        ok_default = False
        for name in settings.executors:
            state = await availability(name, settings)
            mark = "usable  " if state.usable else "UNUSABLE"
            print(f"{name:12} {mark} {state.reason}")
            if name == settings.default_executor:
                ok_default = state.usable
        print(f"default executor: {settings.default_executor} "
              f"({'usable' if ok_default else 'NOT usable'})")
        return 0 if ok_default else 1

    return asyncio.run(main())


def _image(args: argparse.Namespace) -> int:
    from faas.images.cli import main as image_main

    return image_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faas", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the HTTP gateway")
    serve.add_argument("--host", help="bind address (FAAS_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (FAAS_GATEWAY_PORT, default 8080)")
    serve.set_defaults(fn=_serve)

    inv = sub.add_parser("invoke", help="invoke through a gateway; stdin or --payload-file is "
                                        "the payload; exits with the command's status")
    inv.add_argument("function_id")
    inv.add_argument("command", nargs="+", help="command and arguments (put them after --)")
    inv.add_argument("--url", default="http://127.0.0.1:8080")
    inv.add_argument("--payload-file")
    inv.add_argument("--env", action="append", metavar="KEY=VALUE")
    inv.add_argument("--executor")
    inv.add_argument("--image", default="")
    inv.add_argument("--timeout", type=float)
    inv.add_argument("--json", action="store_true", help="print the whole JSON result")
    inv.set_defaults(fn=_invoke)

    doc = sub.add_parser("doctor", help="which isolation tiers work on this host, and why not")
    doc.set_defaults(fn=_doctor)

    img = sub.add_parser("image", help="build guest images (faas image build --help)")
    img.add_argument("rest", nargs=argparse.REMAINDER)
    img.set_defaults(fn=_image)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.fn is not _serve:
        # A client command piped into `head` should end quietly, as other tools do.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        code: int = args.fn(args)
    except FaasError as exc:
        print(f"faas: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
