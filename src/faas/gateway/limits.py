"""Process-wide limits the server sets for itself at start.

* Open files: raised to ``OPEN_FILES`` (the soft limit up to the hard one,
  and the hard one too when running as root), since every connection,
  sandbox pipe, pidfd and daemon socket is a descriptor.
* Connections: capped below the open-file limit with room kept for the
  sandboxes' own descriptors, so a flood of connections can never leave an
  invocation unable to open a pipe.
* Heap: glibc's malloc keeps large freed blocks on the heap once it has seen
  a large block freed (its mmap threshold grows up to 32 MiB); with request
  bodies of several MiB that keeps the peak for good. A fixed threshold
  returns each large block to the system as soon as it is freed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import resource

from faas.config import Settings

log = logging.getLogger("faas.gateway")

OPEN_FILES = 65536
#: Descriptors kept for each concurrent invocation (pipes, pidfds, sockets,
#: cgroup files, a VM's channel and drives) and for the server itself.
FDS_PER_INVOCATION = 24
FDS_RESERVED = 256
#: Upper bound of the automatic connection cap (each connection also costs memory).
AUTO_MAX_CONNECTIONS = 8192
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 256 * 1024


def raise_open_file_limit(target: int = OPEN_FILES) -> int:
    """Raise RLIMIT_NOFILE towards ``target``; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= target:
        return soft
    want_hard = max(hard, target) if hard != resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, want_hard))
    except (ValueError, OSError):  # not root: as far as the hard limit allows
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(target, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(settings: Settings, open_files: int) -> int:
    """``FAAS_MAX_CONNECTIONS``, or what the open-file limit leaves after the sandboxes."""
    room = open_files - FDS_RESERVED - FDS_PER_INVOCATION * (
        settings.max_concurrency + settings.max_queue)
    if settings.max_connections:
        if settings.max_connections > room:
            log.warning("FAAS_MAX_CONNECTIONS=%d leaves too few descriptors for the "
                        "sandboxes (open-file limit %d)", settings.max_connections, open_files)
        return settings.max_connections
    return max(16, min(AUTO_MAX_CONNECTIONS, room))


def limit_heap_growth() -> None:
    """Make glibc return large freed blocks at once (no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
