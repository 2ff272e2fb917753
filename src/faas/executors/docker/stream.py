"""The attach stream's demultiplexer: Docker's framed stdout/stderr into capped buffers.

Without a TTY the Engine multiplexes a container's output as a sequence of
frames: an 8-byte header (stream id, three zero bytes, big-endian length)
and that many bytes of data. ``Demux`` parses it incrementally: ``feed`` any
slice of the stream, however the reads split headers and frames, so a read
cancelled at the deadline loses nothing already received.
"""

from __future__ import annotations

from faas.proc.capture import CappedBuffer

__all__ = ["STDERR", "STDOUT", "Demux"]

STDOUT, STDERR = 1, 2
_HEADER = 8


class Demux:
    """Demultiplexes the Engine's attach stream into capped stdout/stderr buffers.

    Each stream is a ``faas.proc.capture.CappedBuffer``: bytes past ``limit``
    are read and dropped, so the container never blocks on a full pipe, and
    the stream is flagged truncated. A frame of an unknown stream id (0,
    stdin) counts as stdout.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffers = {STDOUT: CappedBuffer(limit), STDERR: CappedBuffer(limit)}
        self._header = bytearray()
        self._stream = STDOUT
        self._left = 0

    @property
    def stdout(self) -> bytes:
        return self.buffers[STDOUT].getvalue()

    @property
    def stderr(self) -> bytes:
        return self.buffers[STDERR].getvalue()

    @property
    def truncated(self) -> tuple[bool, bool]:
        """(stdout truncated, stderr truncated)."""
        return self.buffers[STDOUT].truncated, self.buffers[STDERR].truncated

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        pos, end = 0, len(chunk)
        while pos < end:
            if self._left == 0:
                part = view[pos : pos + _HEADER - len(self._header)]
                self._header += part
                pos += len(part)
                if len(self._header) < _HEADER:
                    return
                stream = self._header[0]
                self._stream = stream if stream in (STDOUT, STDERR) else STDOUT
                self._left = int.from_bytes(self._header[4:8], "big")
                self._header.clear()
                continue
            take = min(self._left, end - pos)
            self.buffers[self._stream].feed(view[pos : pos + take])
            pos += take
            self._left -= take
