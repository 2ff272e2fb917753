"""The agent's framing, and the agent process itself driven through a real pipe."""

import asyncio
import struct
import sys

import pytest

from faas.errors import AgentProtocolError
from faas.protocol import (
    AgentReply,
    AgentRequest,
    Kind,
    encode_frame,
    read_frame,
)


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_round_trip_keeps_binary_blobs() -> None:
    req = AgentRequest(["cat"], {"A": "1"}, bytes(range(256)), 3.5, 10)
    frame = await read_frame(reader_of(req.encode()))
    assert frame is not None
    assert AgentRequest.from_frame(frame) == req
    reply = AgentReply(stdout=b"\x00\xff", stderr=b"e", exit_code=3, error="x")
    frame = await read_frame(reader_of(reply.encode()))
    assert frame is not None and AgentReply.from_frame(frame) == reply


async def test_clean_eof_is_none_and_truncation_is_an_error() -> None:
    assert await read_frame(reader_of(b"")) is None
    data = AgentRequest(["true"], {}).encode()
    for cut in (5, len(data) - 1):
        with pytest.raises(AgentProtocolError):
            await read_frame(reader_of(data[:cut]))


@pytest.mark.parametrize("data, message", [
    (b"XXXX" + bytes(8), "magic"),
    (b"FAAS\x09\x02\x00\x00" + bytes(4), "version"),
    (b"FAAS\x01\x63\x00\x00" + bytes(4), "kind"),
    (b"FAAS\x01\x02\x00\x00" + struct.pack(">I", 1 << 30), "exceeds"),
    (b"FAAS\x01\x02\x00\x00" + struct.pack(">I", 6) + struct.pack(">I", 2) + b"{x",
     "JSON"),
    (b"FAAS\x01\x02\x00\x00" + struct.pack(">I", 6) + struct.pack(">I", 2) + b"[]",
     "object"),
])
async def test_garbage_frames_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(AgentProtocolError, match=message):
        await read_frame(reader_of(data), max_frame=1 << 20)


async def test_blob_sizes_must_match() -> None:
    good = encode_frame(Kind.REQUEST, {"command": ["x"]}, [b"abc"])
    bad = good[:-1] + b""  # body shorter than declared blobs, head patched to match
    head = bytearray(bad[:12])
    struct.pack_into(">I", head, 8, len(bad) - 12)
    with pytest.raises(AgentProtocolError, match="blob sizes"):
        await read_frame(reader_of(bytes(head) + bad[12:]))


async def test_stalled_frame_body_times_out() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(AgentRequest(["true"], {}).encode()[:20])
    with pytest.raises(AgentProtocolError, match="timed out"):
        await read_frame(reader, body_timeout_s=0.2)


async def agent() -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "faas.agent", "--stdio",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)


async def test_agent_over_a_pipe_runs_requests() -> None:
    proc = await agent()
    assert proc.stdin and proc.stdout
    hello = await read_frame(proc.stdout)
    assert hello is not None and hello.kind is Kind.HELLO
    script = "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read()[::-1]); sys.exit(4)"
    proc.stdin.write(AgentRequest([sys.executable, "-c", script], {}, b"\x00abc\xff").encode())
    reply = AgentReply.from_frame(await read_frame(proc.stdout))  # type: ignore[arg-type]
    assert (reply.stdout, reply.exit_code, reply.error) == (b"\xffcba\x00", 4,
                                                            "exited with status 4")
    proc.stdin.write(AgentRequest(["/no/such/binary"], {}).encode())
    reply = AgentReply.from_frame(await read_frame(proc.stdout))  # type: ignore[arg-type]
    assert reply.exit_code == 127 and reply.error == "command not found: /no/such/binary"
    proc.stdin.close()
    assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_agent_answers_garbage_with_an_error_and_closes() -> None:
    proc = await agent()
    assert proc.stdin and proc.stdout
    await read_frame(proc.stdout)
    proc.stdin.write(b"GARBAGE-GARBAGE-GARBAGE")
    frame = await asyncio.wait_for(read_frame(proc.stdout), 10)
    assert frame is not None and frame.kind is Kind.ERROR and "magic" in frame.header["error"]
    assert await asyncio.wait_for(proc.stdout.read(), 10) == b""
    await asyncio.wait_for(proc.wait(), 10)


async def test_agent_runs_commands_with_no_new_privs() -> None:
    proc = await agent()
    assert proc.stdin and proc.stdout
    await read_frame(proc.stdout)
    proc.stdin.write(AgentRequest(["grep", "NoNewPrivs", "/proc/self/status"],
                                  {"PATH": "/usr/bin:/bin"}).encode())
    reply = AgentReply.from_frame(await read_frame(proc.stdout))  # type: ignore[arg-type]
    assert reply.stdout.split() == [b"NoNewPrivs:", b"1"], reply
    proc.stdin.close()
    await asyncio.wait_for(proc.wait(), 10)


async def test_agent_survives_commands_that_never_read_their_stdin() -> None:
    """EPIPE on the command's stdin means "stdin dropped": an ordinary reply every time."""
    proc = await agent()
    assert proc.stdin and proc.stdout
    await read_frame(proc.stdout)
    for argv in (["true"], ["head", "-c", "1"]):
        for size in (0, 70 * 1024, 6 << 20):
            proc.stdin.write(AgentRequest(argv, {"PATH": "/usr/bin:/bin"},
                                          b"y" * size).encode())
            frame = await asyncio.wait_for(read_frame(proc.stdout), 30)
            assert frame is not None and frame.kind is Kind.REPLY, (argv, size, frame)
            reply = AgentReply.from_frame(frame)
            assert reply.exit_code == 0 and reply.error is None, (argv, size, reply)
    proc.stdin.close()
    assert await asyncio.wait_for(proc.wait(), 10) == 0
