"""Who made a leftover: the identity of one running server process on this host.

Every host resource a server makes outside its own memory (cgroups, Docker
containers, VM work folders, temp files) carries the owning server's
*instance id*: ``<pid>x<start time in clock ticks since boot>``. A pid alone
is not enough, since pids are reused; the pair names exactly one process for
the life of the boot.

At start a server sweeps what earlier instances left: a resource whose owner
is not alive (``alive(owner)`` is False) was left by a server that crashed or
was killed, and is removed. A live owner's resources are never touched, so
two servers on one host do not sweep each other.
"""

from __future__ import annotations

import functools
import os
import re

_ID = re.compile(r"([0-9]{1,10})x([0-9]{1,20})")


def _start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time), or None if there is no such process
    or it has exited (a zombie not yet reaped by its parent runs nothing any more)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = stat[stat.rfind(b")") + 2:].split()
    try:
        if rest[0] in (b"Z", b"X"):
            return None
        return int(rest[19])
    except (IndexError, ValueError):
        return None


@functools.cache
def _cached_id(pid: int) -> str:
    return f"{pid}x{_start_ticks(pid) or 0}"


def instance_id() -> str:
    """This process's instance id (stable for its life; a fork gets its own)."""
    return _cached_id(os.getpid())


def parse(value: str) -> tuple[int, int] | None:
    """(pid, start ticks) of an instance id, or None if ``value`` is not one."""
    m = _ID.fullmatch(value)
    return (int(m.group(1)), int(m.group(2))) if m else None


def alive(owner: str) -> bool:
    """Whether the instance ``owner`` still runs. Unparseable ids count as alive (never swept)."""
    parsed = parse(owner)
    if parsed is None:
        return True
    pid, ticks = parsed
    return _start_ticks(pid) == ticks


def find_owner(name: str) -> str | None:
    """The first instance id embedded in ``name`` (e.g. ``faas-123x456-ab``), or None."""
    m = _ID.search(name)
    return m.group(0) if m else None
