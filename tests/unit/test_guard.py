"""The connection guard's choice of whom to evict at the cap, over real socket pairs
(a fake of uvicorn's protocol at the one seam the guard uses: ``cycle``)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from faas.gateway.guard import GuardStats, guard


class FakeTransport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class FakeProtocol(asyncio.Protocol):
    """What the guard needs of uvicorn's protocols: loop, transport, cycle."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: Any = None
        self.cycle: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        return None

    def data_received(self, data: bytes) -> None:
        return None

    def on_response_complete(self) -> None:
        return None


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made: list[tuple[socket.socket, socket.socket]] = []
    yield made
    for a, b in made:
        a.close()
        b.close()


def connect(cls: Any, pairs: list[tuple[socket.socket, socket.socket]],
            sent: bytes = b"") -> tuple[Any, FakeTransport]:
    """A guarded connection over a real socket pair; ``sent`` arrives but is not read."""
    server_side, client_side = socket.socketpair()
    pairs.append((server_side, client_side))
    client_side.sendall(sent)
    conn = cls(asyncio.get_running_loop())
    transport = FakeTransport(server_side)
    conn.connection_made(transport)
    return conn, transport


async def test_a_complete_unread_request_is_never_evicted_a_silent_one_is(
    pairs: list[tuple[socket.socket, socket.socket]]
) -> None:
    stats = GuardStats()
    cls: Any = guard(FakeProtocol, read_timeout_s=30, max_connections=2, stats=stats)
    _, probe = connect(cls, pairs, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # oldest
    _, silent = connect(cls, pairs)
    _, newcomer = connect(cls, pairs)
    assert not probe.closed and silent.closed and not newcomer.closed
    # One more: the silent newcomer goes, never the probe.
    _, slow = connect(cls, pairs, b"POST /x HTTP/1.1\r\nX-a: ")
    assert stats.evicted == 2 and not probe.closed and not slow.closed and newcomer.closed


async def test_when_every_connection_is_busy_the_newcomer_is_refused(
    pairs: list[tuple[socket.socket, socket.socket]]
) -> None:
    stats = GuardStats()
    cls: Any = guard(FakeProtocol, read_timeout_s=30, max_connections=1, stats=stats)
    first, first_transport = connect(cls, pairs)
    first.cycle = type("Cycle", (), {"response_complete": False})()  # mid-request
    _, second_transport = connect(cls, pairs)
    assert stats.refused == 1 and second_transport.closed and not first_transport.closed
