"""Entry point of the guest agent: ``python -m faas.agent [--stdio | --path DEV | --vsock PORT]``.

Inside a microVM the init starts it on the virtio-serial port (or vsock) and
powers the VM off when it returns. ``--stdio`` serves over stdin/stdout, the
form the tests drive through a pipe. The agent sets ``no_new_privs`` on itself
first, so every command it runs inherits it. This module imports only the standard
library and ``faas.agent``/``faas.errors`` so the guest needs nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import socket
import sys

from faas.agent.server import serve_stream

_PR_SET_NO_NEW_PRIVS = 38


def set_no_new_privs() -> bool:
    """Set ``no_new_privs`` on this process, and so on every command it starts:
    no execve can raise privileges (setuid/setgid bits, file capabilities),
    even if one such binary slipped into the image. Root may still drop to the
    commands' uid (that is a setuid(), not an execve). False if refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)


async def _streams_for_fds(
    read_fd: int, write_fd: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
    )
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(write_fd, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


async def _main(args: argparse.Namespace) -> int:
    run_as = (args.uid, args.gid) if args.uid is not None else None
    if args.vsock is not None:
        server_sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        server_sock.bind((socket.VMADDR_CID_ANY, args.vsock))
        server_sock.listen(1)
        server_sock.setblocking(False)
        conn, _ = await asyncio.get_running_loop().sock_accept(server_sock)
        reader, writer = await asyncio.open_connection(sock=conn, limit=2**26)
    elif args.path is not None:
        fd = os.open(args.path, os.O_RDWR | os.O_NOCTTY)
        reader, writer = await _streams_for_fds(fd, os.dup(fd))
    else:
        reader, writer = await _streams_for_fds(os.dup(0), os.dup(1))
    await serve_stream(reader, writer, once=args.once, run_as=run_as, cwd=args.cwd)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="faas-agent", description=__doc__)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--stdio", action="store_true", help="serve over stdin/stdout (default)")
    where.add_argument("--path", help="serve over a character device, e.g. /dev/vport0p1")
    where.add_argument("--vsock", type=int, help="listen on this vsock port")
    parser.add_argument("--once", action="store_true", help="serve one request, then exit")
    parser.add_argument("--uid", type=int, help="run commands as this uid")
    parser.add_argument("--gid", type=int, help="run commands as this gid")
    parser.add_argument("--cwd", help="working directory for commands")
    args = parser.parse_args(argv)
    if (args.uid is None) != (args.gid is None):
        parser.error("--uid and --gid go together")
    if not set_no_new_privs():
        print("faas-agent: cannot set no_new_privs", file=sys.stderr)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
