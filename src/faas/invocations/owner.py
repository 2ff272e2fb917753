"""Who runs a claimed call: ``<host>|<boot id>|<instance id>``, and whether that one is gone.

A call left ``running`` by an owner that is gone (a server killed with
``kill -9``, or a host that rebooted) is recovered at the next start. Only
owners on this host can be judged: one on another host (a shared
PostgreSQL) is never touched here.
"""

from __future__ import annotations

import functools
import socket

from faas import instance

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


@functools.cache
def _host_and_boot() -> tuple[str, str]:
    try:
        with open(_BOOT_ID) as f:
            boot = f.read().strip()
    except OSError:
        boot = "unknown"
    return socket.gethostname()[:64].replace("|", "_"), boot


def this_owner() -> str:
    host, boot = _host_and_boot()
    return f"{host}|{boot}|{instance.instance_id()}"


def is_gone(owner: str) -> bool:
    """True only for an owner of this host that no longer runs (or ran before a reboot)."""
    parts = owner.split("|")
    if len(parts) != 3:
        return False
    host, boot = _host_and_boot()
    if parts[0] != host:
        return False
    return parts[1] != boot or not instance.alive(parts[2])
