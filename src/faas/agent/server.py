"""Serve the agent protocol over any byte stream (pipe, vsock, virtio-serial).

The agent announces itself with HELLO, then serves REQUEST frames one at a
time until the stream closes (``once=True``: exactly one, as in a single-use
VM). A PING (sent by the host after restoring the VM from a snapshot) reseeds
the guest's randomness and clock and is answered with a fresh HELLO; it does
not count as a request. A frame it cannot parse gets an ERROR frame and the stream is closed:
after garbage the framing cannot be trusted any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from faas.agent.execute import run_request
from faas.agent.function import FunctionInstallError, install, warm_up
from faas.agent.reseed import reseed, set_clock
from faas.agent.secret_files import SecretsInstallError
from faas.agent.secret_files import install as install_secrets
from faas.errors import AgentProtocolError
from faas.protocol import (
    MAX_REQUEST_FRAME,
    AgentReply,
    AgentRequest,
    Frame,
    Kind,
    encode_frame,
    read_frame,
)

# 2: PING (snapshot-restore re-handshake), announced as a feature in HELLO.
# 3: a REQUEST may carry the function's code for /function (feature "function").
# 4: a REQUEST may carry the call's secrets for /run/secrets (feature "secrets").
AGENT_VERSION = "4"
FEATURES = ["ping", "function", "secrets"]
log = logging.getLogger("faas.agent")


async def serve_stream(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    once: bool = False,
    max_frame: int = MAX_REQUEST_FRAME,
    run_as: tuple[int, int] | None = None,
    cwd: str | None = None,
) -> int:
    """Serve until EOF (or one request if ``once``); return the number served."""
    served = 0
    user, group = run_as if run_as else (None, None)
    try:
        writer.write(encode_frame(Kind.HELLO, {"agent": AGENT_VERSION, "features": FEATURES}))
        await writer.drain()
        while True:
            try:
                frame = await read_frame(reader, max_frame=max_frame)
                if frame is None:
                    break
                if frame.kind is Kind.PING:
                    hello = _resume(frame)
                    if frame.header.get("warmup") is True:
                        # Run the request path once (as the commands' user) so a
                        # JIT-ing VMM (QEMU TCG) has translated it before the
                        # first real request; nothing of it stays but a pid.
                        await run_request(AgentRequest(["true"], {}, timeout_s=10.0),
                                          user=user, group=group, cwd=cwd)
                        if run_as is not None:  # in a VM: root, commands as another user
                            await asyncio.to_thread(warm_up)
                    writer.write(hello)
                    await writer.drain()
                    continue
                if frame.kind is not Kind.REQUEST:
                    raise AgentProtocolError(f"expected a request frame, got {frame.kind.name}")
                request = AgentRequest.from_frame(frame)
            except AgentProtocolError as exc:
                log.warning("rejecting frame: %s", exc)
                writer.write(encode_frame(Kind.ERROR, {"error": str(exc)}))
                await writer.drain()
                break
            try:
                if request.bundle is not None:
                    await asyncio.to_thread(install, request.bundle[1])
                if request.secrets:
                    # Files of the commands' user (the agent's own when it has none).
                    owner = run_as if run_as is not None else (os.getuid(), os.getgid())
                    await asyncio.to_thread(install_secrets, request.secrets, *owner)
            except (FunctionInstallError, SecretsInstallError) as exc:
                reply = AgentReply(error=str(exc))
            else:
                reply = await run_request(request, user=user, group=group, cwd=cwd)
            writer.write(reply.encode())
            await writer.drain()
            served += 1
            if once:
                break
    except (ConnectionError, BrokenPipeError):
        log.warning("agent channel closed by the host")
    finally:
        with contextlib.suppress(OSError):
            writer.close()
    return served


def _resume(ping: Frame) -> bytes:
    """Handle the host's PING: fresh entropy and clock, then HELLO again."""
    reseeded = reseed(ping.blobs[0]) if ping.blobs else False
    now = ping.header.get("time")
    if isinstance(now, int | float):
        set_clock(float(now))
    return encode_frame(Kind.HELLO, {"agent": AGENT_VERSION, "features": FEATURES,
                                     "resumed": True, "reseeded": reseeded})
