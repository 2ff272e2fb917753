"""Host ends of the host-agent channel: one byte stream, three ways to get it.

* ``UnixListenChannel``: the host listens on a unix socket *before* the VMM
  starts and the VMM connects to it (QEMU ``-chardev socket`` client mode
  behind a virtio-serial port), so no guest byte can be lost to a race.
* ``VsockChannel``: AF_VSOCK to (guest CID, port), retried until the agent
  listens (QEMU with vhost-vsock).
* ``HybridVsockChannel``: Firecracker's hybrid vsock, a unix socket on which
  the host writes ``CONNECT <port>\\n`` and reads ``OK <host port>\\n`` before
  the stream is spliced to the guest port; retried until the agent listens.

``open(deadline)`` returns asyncio streams; ``close()`` is idempotent and
synchronous so teardown can call it on any path.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Protocol

from faas.errors import AgentProtocolError, SandboxError

STREAM_LIMIT = 2**26
_RETRY_S = 0.02
_HANDSHAKE_TIMEOUT_S = 2.0

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Channel(Protocol):
    async def prepare(self) -> None:
        """Set up whatever must exist before the VMM starts."""

    async def open(self) -> Streams:
        """Connect to the agent (callers bound this with their own deadline)."""

    def close(self) -> None: ...


class _StreamOwner:
    def __init__(self) -> None:
        self._writer: asyncio.StreamWriter | None = None

    def _own(self, streams: Streams) -> Streams:
        self._writer = streams[1]
        return streams

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(RuntimeError, OSError):
                self._writer.close()
            self._writer = None


class UnixListenChannel(_StreamOwner):
    """Listen on ``path``; the VMM connects once at start."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._server: asyncio.Server | None = None
        self._conn: asyncio.Future[Streams] | None = None

    async def prepare(self) -> None:
        conn: asyncio.Future[Streams] = asyncio.get_running_loop().create_future()
        self._conn = conn

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if conn.done():
                writer.close()  # only the VMM may connect, and only once
            else:
                conn.set_result((reader, writer))

        self._server = await asyncio.start_unix_server(on_connect, str(self.path),
                                                       limit=STREAM_LIMIT)
        self.path.chmod(0o600)

    async def open(self) -> Streams:
        if self._conn is None:
            raise SandboxError("channel used before prepare()")
        streams = self._own(await asyncio.shield(self._conn))
        self._stop_listening()
        return streams

    def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def close(self) -> None:
        if self._conn is not None and self._conn.done() and not self._conn.cancelled():
            with contextlib.suppress(Exception):
                self._conn.result()[1].close()
        elif self._conn is not None:
            self._conn.cancel()
        self._stop_listening()
        super().close()


class VsockChannel(_StreamOwner):
    """AF_VSOCK to the guest (needs ``/dev/vhost-vsock`` on the host)."""

    def __init__(self, cid: int, port: int) -> None:
        super().__init__()
        self.cid, self.port = cid, port

    async def prepare(self) -> None:
        return None

    async def open(self) -> Streams:
        loop = asyncio.get_running_loop()
        while True:
            sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (self.cid, self.port))
            except OSError:
                sock.close()
                await asyncio.sleep(_RETRY_S)
                continue
            return self._own(await asyncio.open_connection(sock=sock, limit=STREAM_LIMIT))


class HybridVsockChannel(_StreamOwner):
    """Firecracker's unix-socket front of the guest's vsock."""

    def __init__(self, uds_path: Path, port: int) -> None:
        super().__init__()
        self.uds_path, self.port = uds_path, port

    async def prepare(self) -> None:
        return None

    async def open(self) -> Streams:
        while True:
            try:
                return self._own(await hybrid_vsock_connect(self.uds_path, self.port))
            except (OSError, AgentProtocolError):
                await asyncio.sleep(_RETRY_S)


async def hybrid_vsock_connect(uds_path: Path, port: int) -> Streams:
    """One try of the hybrid vsock handshake; returns streams spliced to the guest port.

    Raises ``OSError`` when the socket is not there (VMM still starting) and
    ``AgentProtocolError`` when the VMM refuses (nobody listens on ``port``
    yet: Firecracker then closes the connection) or answers garbage.
    """
    reader, writer = await asyncio.open_unix_connection(str(uds_path), limit=STREAM_LIMIT)
    try:
        writer.write(f"CONNECT {port}\n".encode())
        await writer.drain()
        async with asyncio.timeout(_HANDSHAKE_TIMEOUT_S):
            line = await reader.readline()
    except (OSError, TimeoutError) as exc:
        writer.close()
        raise AgentProtocolError(f"hybrid vsock handshake failed: {exc}") from exc
    parts = line.split()
    if len(parts) != 2 or parts[0] != b"OK" or not parts[1].isdigit():
        writer.close()
        raise AgentProtocolError(f"hybrid vsock handshake refused: {line[:80]!r}")
    return reader, writer
