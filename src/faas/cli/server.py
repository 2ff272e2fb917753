"""The server-side commands: ``faas serve``, ``faas doctor``, ``faas image``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from typing import TYPE_CHECKING

from faas.config import Settings

if TYPE_CHECKING:
    from faas.functions import Functions


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the HTTP gateway")
    serve.add_argument("--host", help="bind address (FAAS_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (FAAS_GATEWAY_PORT, default 8080)")
    serve.add_argument("--insecure", action="store_true",
                       help="run open (no API keys) on a non-loopback address (FAAS_INSECURE)")
    serve.set_defaults(fn=serve_command, keeps_sigpipe_ignored=True)

    doc = sub.add_parser("doctor", help="which isolation tiers work on this host, and why not")
    doc.set_defaults(fn=doctor_command)

    img = sub.add_parser("image", help="build guest images (faas image build --help)")
    img.add_argument("rest", nargs=argparse.REMAINDER)
    img.set_defaults(fn=image_command)


def serve_command(args: argparse.Namespace) -> int:
    from faas import logs
    from faas.errors import FaasError
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
    if args.insecure:
        settings = dataclasses.replace(settings, tenancy=dataclasses.replace(
            settings.tenancy, insecure=True))
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
        if not await auth_mode_allowed(settings, functions):
            await functions.close()
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


async def auth_mode_allowed(settings: Settings, functions: Functions) -> bool:
    """Whether the server may start as configured: with keys, or open where that is
    allowed (loopback, or --insecure); says which in the log (or why not on stderr)."""
    import logging

    from faas.errors import FaasError
    from faas.tenancy.principal import is_loopback

    log = logging.getLogger("faas.auth")
    try:
        keys = await functions.store.tenants.usable_keys()
    except FaasError as exc:
        print(f"faas: cannot read the API keys: {exc}", file=sys.stderr)
        return False
    if keys:
        log.info("API keys required (%d usable)", keys)
        return True
    if is_loopback(settings.host):
        log.warning("running OPEN: no API keys exist, so every caller on this machine is the "
                    "default tenant's admin; create one with: faas admin create-key")
        return True
    if settings.tenancy.insecure:
        log.warning("running OPEN on %s (--insecure): anyone who can reach it is an admin",
                    settings.host)
        return True
    print(f"faas: refusing to serve on {settings.host} without API keys: create one with "
          "`faas admin create-tenant NAME` and `faas admin create-key --tenant NAME --role "
          "admin`, or pass --insecure to run open", file=sys.stderr)
    return False


def doctor_command(args: argparse.Namespace) -> int:
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


def image_command(args: argparse.Namespace) -> int:
    from faas.images.cli import main as image_main

    return image_main(args.rest)
