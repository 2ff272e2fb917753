"""A bounded, streaming reader of ``multipart/form-data`` bodies (RFC 7578), for uploads.

Only what a function upload needs, and nothing a hostile body can inflate:
the boundary is required and checked (1-70 characters of RFC 2046's set);
a part's header block is at most ``MAX_HEADER_BYTES`` and
``MAX_HEADER_LINES`` lines; a part's name comes from its
``Content-Disposition`` only; bytes before the first boundary and after the
last are ignored (the RFC's preamble and epilogue) but counted; the body
ends at the closing boundary, and one that ends before it is malformed.
Part bodies are streamed: ``Part.chunks()`` yields them as they arrive, so
a bundle goes to disk without being held in memory. The caller bounds the
total size and the deadline (the source it hands in enforces both).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from faas.errors import PayloadTooLarge, ValidationError

MAX_HEADER_BYTES = 8 * 1024
MAX_HEADER_LINES = 16
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]")
_PARAM = re.compile(r';\s*([A-Za-z0-9_-]+)=(?:"([^"\\]*)"|([^;\s"]+))')


def boundary_of(content_type: str) -> str:
    """The boundary of a ``multipart/form-data`` Content-Type; 400 without a valid one."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise ValidationError("expected multipart/form-data")
    found = {m[1].lower(): m[2] if m[2] is not None else m[3]
             for m in _PARAM.finditer(";" + params)}
    boundary = found.get("boundary")
    if boundary is None or not _BOUNDARY.fullmatch(boundary):
        raise ValidationError("multipart/form-data needs a boundary of 1-70 characters "
                              "(RFC 2046)")
    return boundary


@dataclass
class Part:
    name: str
    filename: str | None
    _reader: MultipartReader = field(repr=False)

    def chunks(self) -> AsyncIterator[bytes]:
        """The part's body, chunk by chunk; must be read (or ``drain``ed) before the next."""
        return self._reader.body()

    async def read(self, limit: int) -> bytes:
        """The whole body; ``PayloadTooLarge`` past ``limit``."""
        out = bytearray()
        async for chunk in self.chunks():
            out += chunk
            if len(out) > limit:
                raise PayloadTooLarge(f"multipart part {self.name!r} exceeds {limit} bytes")
        return bytes(out)


class MultipartReader:
    """Parts of one body read from ``source`` (an async iterator of byte chunks)."""

    def __init__(self, source: AsyncIterator[bytes], boundary: str) -> None:
        self._source = source
        self._buffer = bytearray()
        self._delimiter = b"\r\n--" + boundary.encode("ascii")
        self._done = False
        self._in_body = False

    async def _fill(self) -> bool:
        try:
            chunk = await anext(self._source)
        except StopAsyncIteration:
            return False
        self._buffer += chunk
        return True

    async def parts(self) -> AsyncIterator[Part]:
        # The first delimiter may open the body, without the CRLF before it.
        self._buffer += b"\r\n"
        await self._skip_to_delimiter()
        while not self._done:
            yield await self._headers()
            if self._in_body:
                async for _ in self.body():
                    pass  # the caller skipped this part's body

    async def _skip_to_delimiter(self) -> None:
        while True:
            at = self._buffer.find(self._delimiter)
            if at >= 0:
                del self._buffer[:at + len(self._delimiter)]
                await self._after_delimiter()
                return
            keep = len(self._delimiter) - 1
            if len(self._buffer) > keep:
                del self._buffer[:len(self._buffer) - keep]
            if not await self._fill():
                raise ValidationError("multipart body has no part (boundary not found)")

    async def _after_delimiter(self) -> None:
        """After ``--boundary``: ``--`` closes the body, CRLF opens a part."""
        while len(self._buffer) < 2:
            if not await self._fill():
                raise ValidationError("multipart body ends inside a boundary line")
        if self._buffer[:2] == b"--":
            self._done = True
            return
        # Transport padding (spaces, tabs) may follow a boundary before its CRLF.
        while True:
            stripped = self._buffer.lstrip(b" \t")
            if stripped[:2] == b"\r\n":
                del self._buffer[:len(self._buffer) - len(stripped) + 2]
                return
            if len(stripped) >= 2 or len(self._buffer) > 256 or not await self._fill():
                raise ValidationError("malformed multipart boundary line")

    async def _headers(self) -> Part:
        while True:
            if self._buffer.startswith(b"\r\n"):  # a part without headers
                block = b""
                del self._buffer[:2]
                break
            end = self._buffer.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES + 4)
            if end >= 0:
                block = bytes(self._buffer[:end])
                del self._buffer[:end + 4]
                break
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise ValidationError(f"a multipart part's headers exceed {MAX_HEADER_BYTES} "
                                      "bytes")
            if not await self._fill():
                raise ValidationError("multipart body ends inside a part's headers")
        lines = block.split(b"\r\n") if block else []
        if len(lines) > MAX_HEADER_LINES:
            raise ValidationError(f"a multipart part has more than {MAX_HEADER_LINES} headers")
        name = filename = None
        for line in lines:
            key, sep, value = line.partition(b":")
            if not sep:
                raise ValidationError("malformed multipart part header")
            if key.strip().lower() != b"content-disposition":
                continue
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError("a multipart part header is not UTF-8") from None
            kind, _, params = text.partition(";")
            if kind.strip().lower() != "form-data":
                raise ValidationError("a multipart part's Content-Disposition must be form-data")
            found = {m[1].lower(): m[2] if m[2] is not None else m[3]
                     for m in _PARAM.finditer(";" + params)}
            name, filename = found.get("name"), found.get("filename")
        if name is None:
            raise ValidationError("a multipart part has no Content-Disposition name")
        self._in_body = True
        return Part(name, filename, self)

    async def body(self) -> AsyncIterator[bytes]:
        """The current part's body up to the next delimiter (then positioned after it)."""
        if not self._in_body:
            return
        keep = len(self._delimiter) - 1
        while True:
            at = self._buffer.find(self._delimiter)
            if at >= 0:
                chunk = bytes(self._buffer[:at])
                del self._buffer[:at + len(self._delimiter)]
                self._in_body = False
                if chunk:
                    yield chunk
                await self._after_delimiter()
                return
            if len(self._buffer) > keep:
                chunk = bytes(self._buffer[:len(self._buffer) - keep])
                del self._buffer[:len(self._buffer) - keep]
                yield chunk
            if not await self._fill():
                raise ValidationError("multipart body ends inside a part (no closing "
                                      "boundary)")
