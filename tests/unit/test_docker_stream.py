"""The attach-stream demultiplexer, fed the way a socket delivers: in arbitrary pieces."""

from __future__ import annotations

import random

import pytest

from faas.executors.docker.stream import STDERR, STDOUT, Demux


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


FRAMES = [(STDOUT, b"hello "), (STDERR, b"warn\n"), (STDOUT, b""), (STDOUT, b"world\n"),
          (STDERR, bytes(range(256)) * 40), (STDOUT, b"\x00\xff" * 5000)]
WIRE = b"".join(frame(s, d) for s, d in FRAMES)
WANT_OUT = b"".join(d for s, d in FRAMES if s == STDOUT)
WANT_ERR = b"".join(d for s, d in FRAMES if s == STDERR)


def feed_in_pieces(demux: Demux, wire: bytes, cuts: list[int]) -> None:
    last = 0
    for cut in [*sorted(cuts), len(wire)]:
        demux.feed(wire[last:cut])
        last = cut


def test_one_read_holds_everything() -> None:
    demux = Demux(1 << 20)
    demux.feed(WIRE)
    assert (demux.stdout, demux.stderr) == (WANT_OUT, WANT_ERR)
    assert demux.truncated == (False, False)


def test_byte_by_byte() -> None:
    demux = Demux(1 << 20)
    for i in range(len(WIRE)):
        demux.feed(WIRE[i : i + 1])
    assert (demux.stdout, demux.stderr) == (WANT_OUT, WANT_ERR)


@pytest.mark.parametrize("seed", range(25))
def test_random_splits_inside_headers_and_frames(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 (reproducible cut points, not secrets)
    cuts = rng.sample(range(1, len(WIRE)), rng.randint(1, 60))
    demux = Demux(1 << 20)
    feed_in_pieces(demux, WIRE, cuts)
    assert (demux.stdout, demux.stderr) == (WANT_OUT, WANT_ERR)


def test_every_split_point_of_a_header() -> None:
    wire = frame(STDERR, b"abc") + frame(STDOUT, b"xyz")
    for cut in range(1, len(wire)):
        demux = Demux(100)
        feed_in_pieces(demux, wire, [cut])
        assert (demux.stdout, demux.stderr) == (b"xyz", b"abc"), cut


def test_each_stream_is_capped_on_its_own_and_flagged() -> None:
    wire = frame(STDOUT, b"a" * 7) + frame(STDERR, b"b" * 3) + frame(STDOUT, b"c" * 5)
    demux = Demux(10)
    feed_in_pieces(demux, wire, [3, 9, 12, 20])
    assert demux.stdout == b"a" * 7 + b"c" * 3
    assert demux.stderr == b"b" * 3
    assert demux.truncated == (True, False)


def test_exactly_at_the_cap_is_not_truncated() -> None:
    demux = Demux(4)
    demux.feed(frame(STDOUT, b"1234"))
    assert demux.stdout == b"1234" and demux.truncated == (False, False)
    demux.feed(frame(STDOUT, b"5"))
    assert demux.stdout == b"1234" and demux.truncated == (True, False)


def test_bytes_after_the_cap_are_consumed_not_misread_as_headers() -> None:
    """Dropped data must still be counted, or the next header is read from the middle."""
    demux = Demux(2)
    demux.feed(frame(STDOUT, bytes([STDERR, 0, 0, 0, 0, 0, 0, 9]) * 3))
    demux.feed(frame(STDERR, b"ok"))
    assert (demux.stdout, demux.stderr) == (bytes([STDERR, 0]), b"ok")


def test_unknown_stream_ids_count_as_stdout() -> None:
    demux = Demux(100)
    demux.feed(frame(0, b"stdin?") + frame(7, b"odd"))
    assert (demux.stdout, demux.stderr) == (b"stdin?odd", b"")
