"""What every tier's secrets test checks: the files inside, and no trace on the host.

``SECRETS`` are two secrets with values unique to this test process (so a host
scan never matches another worktree's run); ``INSIDE`` is a shell script each
tier runs in its sandbox, and ``check_inside`` reads its output: both values
at ``/run/secrets/<name>``, 0400 files of the command's uid in a 0500 folder
on a tmpfs, nothing of them in the environment, no way to write them.
``host_processes_holding`` scans every host process's command line and
environment for a value while a call runs.
"""

from __future__ import annotations

import os
import secrets as random
from pathlib import Path

from faas.models import InvocationResult
from faas.secrets.values import Secret

_TOKEN = random.token_hex(12)
SECRETS = (Secret("db", f"db-{_TOKEN}".encode()), Secret("api_key", f"key-{_TOKEN}".encode()))

INSIDE = r"""
cat /run/secrets/db; echo
cat /run/secrets/api_key; echo
id -u
stat -c '%a %u' /run/secrets /run/secrets/db /run/secrets/api_key
awk '$2 == "/run/secrets" {print "fstype", $3}' /proc/mounts
env | grep -c -e "$(cat /run/secrets/db)" -e "$(cat /run/secrets/api_key)" || true
if echo x > /run/secrets/db 2>/dev/null; then echo write ok; else echo write refused; fi
if chmod 600 /run/secrets/db 2>/dev/null; then echo chmod ok; else echo chmod refused; fi
"""


def check_inside(result: InvocationResult) -> None:
    """Assert what ``INSIDE`` printed (the command's uid is whatever ``id -u`` said)."""
    lines = result.stdout.decode().splitlines()
    assert result.exit_code == 0, result
    db, key, uid, folder, db_stat, key_stat, fstype, in_env, write, chmod = lines
    assert (db.encode(), key.encode()) == (SECRETS[0].value, SECRETS[1].value), lines
    assert folder == f"500 {uid}", lines
    assert db_stat == key_stat == f"400 {uid}", lines
    assert fstype == "fstype tmpfs", lines
    assert in_env == "0", lines
    assert (write, chmod) == ("write refused", "chmod refused"), lines


def host_processes_holding(value: bytes) -> list[str]:
    """Every host process whose command line or environment holds ``value``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for what in ("cmdline", "environ"):
            try:
                data = (entry / what).read_bytes()
            except OSError:  # gone, or a kernel thread
                continue
            if value in data:
                found.append(f"{entry.name} {what}: {data[:200]!r}")
    return found
