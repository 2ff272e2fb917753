"""Connection-level defences of the HTTP server: a header deadline, a header size cap
and a cap on open connections.

uvicorn bounds neither how long a client may take to send a request's
headers nor how many connections may stay open: a client sending one byte a
second holds a connection, and a file descriptor, for ever, and a few
thousand of them exhaust the descriptors the sandboxes need. ``guard()``
wraps uvicorn's HTTP protocol class (the seam is the ``asyncio.Protocol``
uvicorn instantiates per connection) with three rules:

* **Header deadline.** A connection must finish a request's headers within
  ``read_timeout_s`` of being opened, or of the end of its previous
  response; otherwise it is closed. (The request body has its own deadline,
  enforced where the gateway reads it; a response in progress is never cut.)
* **Header size.** More than ``max_header_bytes`` received without complete
  headers closes the connection.
* **Connection cap.** At most ``max_connections`` are open. One more evicts
  a connection that is not in the middle of a request: the oldest one stuck
  in a request's headers first, then the oldest idle between requests, then
  the oldest that has sent nothing (a connection whose complete request
  waits unread is spared); if there is none, the newcomer is closed at once.
  A flood of slow clients therefore cannot lock out a health check or a real
  caller: they are the ones evicted.

Closing is quiet: one rate-limited log line, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

log = logging.getLogger("faas.gateway.guard")

MAX_HEADER_BYTES = 64 * 1024


class GuardStats:
    """Counters of what the guard did (shown in ``/metrics``)."""

    def __init__(self) -> None:
        self.open = 0
        self.header_timeouts = 0
        self.header_too_large = 0
        self.evicted = 0
        self.refused = 0


def guard(base: type[asyncio.Protocol], *, read_timeout_s: float, max_connections: int,
          max_header_bytes: int = MAX_HEADER_BYTES,
          stats: GuardStats | None = None) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's protocol class ``base`` that enforces the rules above."""
    if max_connections < 1:
        raise ValueError("max_connections must be >= 1")
    counters = stats or GuardStats()
    # Open connections, oldest first (dicts keep insertion order).
    connections: dict[Any, None] = {}

    class Guarded(base):  # type: ignore[valid-type,misc]
        _guard_timer: asyncio.TimerHandle | None = None
        _guard_quiet_since = 0.0
        _guard_header_bytes = 0
        _guard_served = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            connections[self] = None
            counters.open = len(connections)
            self._guard_quiet_since = self.loop.time()
            self._guard_arm(read_timeout_s)
            if len(connections) > max_connections:
                self._guard_make_room()

        def connection_lost(self, exc: Exception | None) -> None:
            connections.pop(self, None)
            counters.open = len(connections)
            if self._guard_timer is not None:
                self._guard_timer.cancel()
                self._guard_timer = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            cycle = getattr(self, "cycle", None)
            if self._guard_busy() or (cycle is not None and getattr(cycle, "more_body", False)):
                # Headers done: this is body (possibly of a request already
                # answered, e.g. with 413, which the parser skips).
                self._guard_header_bytes = 0
                return
            self._guard_header_bytes += len(data)
            if self._guard_header_bytes > max_header_bytes and not self.transport.is_closing():
                counters.header_too_large += 1
                log.warning("closed a connection that sent over %d bytes of headers",
                            max_header_bytes)
                self.transport.close()

        def on_response_complete(self) -> None:
            self._guard_served = True
            self._guard_quiet_since = self.loop.time()
            self._guard_header_bytes = 0
            super().on_response_complete()

        # -- the rules ------------------------------------------------------

        def _guard_busy(self) -> bool:
            """A request's headers arrived and its response is not complete."""
            cycle = getattr(self, "cycle", None)
            return cycle is not None and not cycle.response_complete

        def _guard_arm(self, delay: float) -> None:
            self._guard_timer = self.loop.call_later(delay, self._guard_check)

        def _guard_check(self) -> None:
            self._guard_timer = None
            if self.transport is None or self.transport.is_closing():
                return
            now = self.loop.time()
            if self._guard_busy():
                self._guard_quiet_since = now
                self._guard_arm(read_timeout_s)
                return
            waited = now - self._guard_quiet_since
            if waited < read_timeout_s:
                self._guard_arm(read_timeout_s - waited)
                return
            counters.header_timeouts += 1
            log.info("closed a connection that sent no complete request in %gs",
                     read_timeout_s)
            self.transport.close()

        def _guard_make_room(self) -> None:
            victim = self._guard_victim()
            if victim is not None:
                counters.evicted += 1
                log.warning("connection cap (%d) reached: closed an idle connection",
                            max_connections)
                victim.transport.close()
                connections.pop(victim, None)
                return
            counters.refused += 1
            log.warning("connection cap (%d) reached with every connection busy: "
                        "refused a new one", max_connections)
            self.transport.close()
            connections.pop(self, None)

        def _guard_victim(self) -> Any:
            """The connection to close for a newcomer, or None to refuse the newcomer.

            First the oldest that sent part of a request's headers and no more
            (what a slow-headers attack looks like), then the oldest idle
            between requests, then the oldest that has sent nothing. In a burst
            the server accepts many connections before it reads any, so a
            connection whose bytes were not read yet is judged by peeking at
            its socket: a complete request waiting there (a health check
            caught in the burst) is never chosen.
            """
            idle = silent = None
            for other in connections:
                if other is self or other._guard_busy():
                    continue
                if other._guard_header_bytes:
                    return other
                if other._guard_served:
                    idle = idle or other
                    continue
                waiting = other._guard_peek()
                if b"\r\n\r\n" in waiting:
                    continue  # a whole request, not read yet
                if waiting:
                    return other
                silent = silent or other
            return idle or silent

        def _guard_peek(self) -> bytes:
            """Bytes received on this connection and not read yet (a peek, no read)."""
            try:
                fd = self.transport.get_extra_info("socket").fileno()
                with socket.socket(fileno=os.dup(fd)) as sock:
                    return sock.recv(max_header_bytes, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except (OSError, AttributeError, ValueError):
                return b""

    Guarded.__name__ = f"Guarded{base.__name__}"
    Guarded.__qualname__ = Guarded.__name__
    return Guarded
