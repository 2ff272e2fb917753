"""``faas admin``: operator commands that work on the store directly (on the server's host,
with the server's FAAS_* environment), not through the HTTP API.

    admin rotate-secret-key [--new-key-file F]
        re-encrypt every secret under a new master key, in one transaction. With the key
        file (no FAAS_SECRET_KEY) the new key is made at random and replaces
        <data_dir>/secret.key; a crash at any step leaves a state the next start
        settles. With FAAS_SECRET_KEY, F holds the new key's base64 and the variable
        must be set to it before servers restart.

Each subcommand is one function below and one ``add_parser`` entry.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from faas.cli.common import RAW_HELP, plain
from faas.config import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = sub.add_parser("admin", help="operator commands on the store (server host)",
                           description=plain(__doc__), formatter_class=RAW_HELP)
    commands = admin.add_subparsers(dest="admin_cmd", required=True)

    rotate = commands.add_parser(
        "rotate-secret-key", help="re-encrypt every secret under a new master key")
    rotate.add_argument("--new-key-file", type=Path, metavar="F",
                        help="a file holding the new key's base64 (32 bytes); required "
                             "when FAAS_SECRET_KEY is set")
    rotate.set_defaults(fn=rotate_secret_key_command)


def rotate_secret_key_command(args: argparse.Namespace) -> int:
    from faas.secrets.rotation import read_new_key, rotate_master_key
    from faas.store import open_store

    settings = Settings.from_env()
    new_key = None if args.new_key_file is None else read_new_key(args.new_key_file)

    async def main() -> int:
        store = await open_store(settings.database_url or None, settings.data_dir)
        try:
            done = await rotate_master_key(settings, store, new_key)
        finally:
            await store.close()
        print(f"re-encrypted {done.rows} secrets: master key {done.old_key_id} -> "
              f"{done.new_key_id}")
        if done.from_env:
            print(f"now set FAAS_SECRET_KEY to the key in {args.new_key_file} and restart "
                  "every server; until then they cannot open the secrets")
        else:
            print("servers running now load the new key when they next open a secret")
        return 0

    return asyncio.run(main())
