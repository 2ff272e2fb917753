"""A byte buffer with a cap: what the caller keeps of a child's output stream."""

from __future__ import annotations


class CappedBuffer:
    """Keeps the first ``limit`` bytes fed to it; ``truncated`` once more arrived.

    The bytes past the cap are dropped by the caller having read them, so a
    child flooding its output never blocks on a full pipe or socket.
    """

    __slots__ = ("buf", "eof", "limit", "truncated")

    def __init__(self, limit: int) -> None:
        self.buf = bytearray()
        self.limit = limit
        self.truncated = False
        self.eof = False

    def feed(self, data: bytes | memoryview) -> None:
        room = self.limit - len(self.buf)
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        self.buf += data

    def getvalue(self) -> bytes:
        return bytes(self.buf)
