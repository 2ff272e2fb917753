"""A container's stdio over the attach stream: payload in (then EOF), output out.

``pump`` writes the payload to the stream while draining the multiplexed
output into a ``Demux`` until the container closes the stream. Unread stdin
is dropped, never an error, and never a SIGPIPE (see ``feed_stdin``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from faas.executors.docker.stream import Demux

__all__ = ["pump", "read_all"]

log = logging.getLogger(__name__)

_SEND_CHUNK = 1024 * 1024
_READ_CHUNK = 65536


async def pump(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], payload: bytes, demux: Demux,
) -> None:
    """Feed stdin (then EOF) while draining output until the container closes it."""
    reader, writer = conn
    # stdin goes out on a duplicate of the stream's descriptor (see feed_stdin).
    sock = socket.socket(fileno=os.dup(writer.get_extra_info("socket").fileno()))
    feeder = asyncio.create_task(feed_stdin(sock, payload))
    try:
        await read_all(reader, demux)
    finally:
        feeder.cancel()
        # wait() neither raises the feeder's CancelledError nor swallows ours.
        await asyncio.wait([feeder])
        sock.close()  # idempotent; the feeder may have been cancelled before it ran


async def feed_stdin(sock: socket.socket, payload: bytes) -> None:
    """Write ``payload`` then EOF to the attach stream; unread stdin is dropped.

    A command that exits without reading its stdin makes the daemon close
    the stream, and the write fails with EPIPE or ECONNRESET: that is the
    ordinary end of "stdin dropped", not an error. The bytes go out with
    ``send(MSG_NOSIGNAL)`` on ``sock``, a duplicate of the stream's
    descriptor (closed here), never through the transport's plain
    ``send()``, which raises SIGPIPE and kills the whole server where
    SIGPIPE has its default action.
    """
    loop = asyncio.get_running_loop()
    view = memoryview(payload)
    try:
        while view:
            try:
                view = view[sock.send(view[:_SEND_CHUNK], socket.MSG_NOSIGNAL):]
            except BlockingIOError:
                await _writable(loop, sock.fileno())
        sock.shutdown(socket.SHUT_WR)
    except OSError as exc:  # EPIPE, ECONNRESET, ENOTCONN: the command stopped reading
        log.debug("stdin dropped after %d of %d bytes: %r",
                  len(payload) - len(view), len(payload), exc)
    finally:
        sock.close()


async def read_all(reader: asyncio.StreamReader, demux: Demux) -> None:
    """Feed everything the stream still delivers into ``demux``."""
    try:
        while chunk := await reader.read(_READ_CHUNK):
            demux.feed(chunk)
    except OSError as exc:
        log.debug("attach stream ended with %r", exc)


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Wait until ``fd`` can take more bytes."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)
