"""The bounded multipart reader: parts stream out in chunks, hostile framing is a 400."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from faas.errors import PayloadTooLarge, ValidationError
from faas.gateway.multipart import MAX_HEADER_BYTES, MultipartReader, boundary_of


async def source(body: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i:i + size]


def body_of(*parts: tuple[str, bytes], boundary: bytes = b"B0und") -> bytes:
    out = b"preamble\r\n"
    for name, data in parts:
        out += (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + name.encode()
                + b"\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                + data + b"\r\n")
    return out + b"--" + boundary + b"--\r\nepilogue"


async def read_all(body: bytes, chunk: int) -> list[tuple[str, bytes]]:
    reader = MultipartReader(source(body, chunk), "B0und")
    return [(part.name, await part.read(1 << 20)) async for part in reader.parts()]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 100_000])
async def test_parts_survive_any_chunking(chunk: int) -> None:
    tricky = b"\r\n--B0un\r\n-B0und\r--B0und" + bytes(range(256))  # near-delimiters
    body = body_of(("spec", b'{"a": 1}'), ("bundle", tricky), ("empty", b""))
    assert await read_all(body, chunk) == [("spec", b'{"a": 1}'), ("bundle", tricky),
                                           ("empty", b"")]


async def test_a_part_body_streams_without_being_held_whole() -> None:
    data = b"x" * 300_000
    reader = MultipartReader(source(body_of(("bundle", data)), 65536), "B0und")
    sizes = [len(c) async for part in reader.parts() async for c in part.chunks()]
    assert sum(sizes) == len(data) and max(sizes) <= 65536 + 64


@pytest.mark.parametrize("header, ok", [
    ("multipart/form-data; boundary=abc", "abc"),
    ('multipart/form-data; boundary="a b:c"', "a b:c"),
    ("Multipart/Form-Data;boundary=x", "x"),
    ("multipart/form-data", None),
    ("multipart/form-data; boundary=", None),
    ("multipart/form-data; boundary=" + "b" * 71, None),
    ('multipart/form-data; boundary="ends with space "', None),
    ("multipart/mixed; boundary=abc", None),
])
def test_the_boundary_is_required_and_checked(header: str, ok: str | None) -> None:
    if ok is None:
        with pytest.raises(ValidationError):
            boundary_of(header)
    else:
        assert boundary_of(header) == ok


@pytest.mark.parametrize("body, words", [
    (b"--B0und\r\n" + b"X-Pad: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\nx\r\n--B0und--",
     "headers exceed"),
    (b"--B0und\r\n" + b"X: y\r\n" * 20 + b"Content-Disposition: form-data; name=a\r\n\r\n"
     b"x\r\n--B0und--", "more than 16 headers"),
    (b"--B0und\r\nContent-Disposition: form-data\r\n\r\nx\r\n--B0und--", "no Content-Disp"),
    (b"--B0und\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--B0und--", "form-data"),
    (b"--B0und\r\nContent-Disposition: form-data; name=a\r\n\r\nnever closed", "ends inside"),
    (b"--B0und\r\nno colon here\r\n\r\nx\r\n--B0und--", "malformed"),
    (b"nothing", "boundary not found"),
    (b"--B0undjunk\r\n", "malformed multipart boundary"),
])
async def test_hostile_framing_is_refused(body: bytes, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        await read_all(body, 5)


async def test_a_part_over_its_limit_is_413() -> None:
    reader = MultipartReader(source(body_of(("spec", b"x" * 100)), 7), "B0und")
    async for part in reader.parts():
        with pytest.raises(PayloadTooLarge):
            await part.read(99)
        break
