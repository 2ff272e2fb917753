"""``faas admin``: tenants and API keys, on the store directly (no server needed).

The bootstrap of a new installation: ``faas admin create-tenant acme`` and
``faas admin create-key --tenant acme --role admin --out key.txt``; the
same operations exist over HTTP for admins (``faas.gateway.routes.admin``).
The store is the one ``faas serve`` uses (``FAAS_DATABASE_URL``, else SQLite
in ``FAAS_DATA_DIR``). A new key is printed once (or written 0600 to
``--out``), never stored.

``rotate-secret-key [--new-key-file F]`` re-encrypts every secret under a new
master key in one transaction. With the key file (no ``FAAS_SECRET_KEY``)
the new key is made at random and replaces ``<data_dir>/secret.key``; a
crash at any step leaves a state the next start settles. With
``FAAS_SECRET_KEY``, F holds the new key's base64 and the variable must be
set to it before servers restart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from faas.config import Settings
from faas.store import Store, open_store
from faas.tenancy import admin


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("admin", help="tenants and API keys, on the store directly")
    commands = parser.add_subparsers(dest="admin_cmd", required=True)

    tenant = commands.add_parser("create-tenant", help="create a tenant")
    tenant.add_argument("name")
    tenant.add_argument("--quota", action="append", metavar="NAME=VALUE",
                        help="a quota override (repeat), e.g. rate_per_s=10")
    tenant.set_defaults(fn=_run(_create_tenant))

    quotas = commands.add_parser("set-quotas", help="replace a tenant's quota overrides")
    quotas.add_argument("name")
    quotas.add_argument("--quota", action="append", metavar="NAME=VALUE")
    quotas.set_defaults(fn=_run(_set_quotas))

    key = commands.add_parser("create-key", help="create an API key (printed once)")
    key.add_argument("--tenant", required=True)
    key.add_argument("--role", required=True, choices=["invoker", "developer", "admin"])
    key.add_argument("--name", default="", help="a label for lists and the audit log")
    key.add_argument("--expires-in", type=float, metavar="SECONDS")
    key.add_argument("--out", help="write the key to this new file (mode 0600), not stdout")
    key.set_defaults(fn=_run(_create_key))

    keys = commands.add_parser("list-keys", help="API keys (never the keys themselves)")
    keys.add_argument("--tenant")
    keys.set_defaults(fn=_run(_list_keys))

    revoke = commands.add_parser("revoke-key", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(fn=_run(_revoke_key))

    tenants = commands.add_parser("list-tenants", help="every tenant")
    tenants.set_defaults(fn=_run(_list_tenants))

    rotate = commands.add_parser(
        "rotate-secret-key", help="re-encrypt every secret under a new master key")
    rotate.add_argument("--new-key-file", type=Path, metavar="F",
                        help="a file holding the new key's base64 (32 bytes); required "
                             "when FAAS_SECRET_KEY is set")
    rotate.set_defaults(fn=_run(_rotate_secret_key))


Command = Callable[[Store, argparse.Namespace], Awaitable[int]]


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = Settings.from_env()

        async def main() -> int:
            store = await open_store(settings.database_url or None, settings.data_dir)
            try:
                return await command(store, args)
            finally:
                await store.close()
        return asyncio.run(main())
    return run


def _quota_args(entries: list[str] | None) -> dict[str, Any]:
    quotas: dict[str, Any] = {}
    for entry in entries or []:
        name, sep, value = entry.partition("=")
        if not sep:
            raise SystemExit(f"faas admin: --quota takes NAME=VALUE, not {entry[:64]!r}")
        try:
            quotas[name] = int(value)
        except ValueError:
            try:
                quotas[name] = float(value)
            except ValueError:
                raise SystemExit(f"faas admin: quota {name[:64]} needs a number") from None
    return quotas


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


async def _create_tenant(store: Store, args: argparse.Namespace) -> int:
    _print(admin.tenant_json(await admin.create_tenant(
        store.tenants, args.name, _quota_args(args.quota))))
    return 0


async def _set_quotas(store: Store, args: argparse.Namespace) -> int:
    _print(admin.tenant_json(await admin.set_quotas(
        store.tenants, args.name, _quota_args(args.quota))))
    return 0


async def _create_key(store: Store, args: argparse.Namespace) -> int:
    issued = await admin.create_key(store.tenants, args.tenant, args.role, args.name,
                                    args.expires_in)
    if args.out:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(issued.key + "\n")
        print(f"key {issued.info.id} ({issued.info.role} of {issued.info.tenant}) written to "
              f"{args.out}", file=sys.stderr)
    else:
        print(issued.key)
        print(f"key {issued.info.id} ({issued.info.role} of {issued.info.tenant}): keep it, "
              "it is not shown again", file=sys.stderr)
    return 0


async def _list_keys(store: Store, args: argparse.Namespace) -> int:
    _print([admin.key_json(k) for k in await store.tenants.list_keys(args.tenant)])
    return 0


async def _revoke_key(store: Store, args: argparse.Namespace) -> int:
    _print(admin.key_json(await admin.revoke_key(store.tenants, args.key_id)))
    return 0


async def _list_tenants(store: Store, args: argparse.Namespace) -> int:
    _print([admin.tenant_json(t) for t in await store.tenants.list_tenants()])
    return 0


async def _rotate_secret_key(store: Store, args: argparse.Namespace) -> int:
    from faas.secrets.rotation import read_new_key, rotate_master_key

    new_key = None if args.new_key_file is None else read_new_key(args.new_key_file)
    done = await rotate_master_key(Settings.from_env(), store, new_key)
    print(f"re-encrypted {done.rows} secrets: master key {done.old_key_id} -> "
          f"{done.new_key_id}")
    if done.from_env:
        print(f"now set FAAS_SECRET_KEY to the key in {args.new_key_file} and restart "
              "every server; until then they cannot open the secrets")
    else:
        print("servers running now load the new key when they next open a secret")
    return 0
