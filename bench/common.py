"""Shared benchmark helpers: percentiles, a gateway process, a load generator."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import free_port


def pct(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``, interpolated linearly between the
    two closest ranks; the one percentile every benchmark prints."""
    s = sorted(samples)
    pos = q / 100 * (len(s) - 1)
    low = int(pos)
    high = min(low + 1, len(s) - 1)
    return s[low] + (s[high] - s[low]) * (pos - low)


def summary(name: str, samples_ms: list[float], wall_s: float | None = None) -> dict[str, float]:
    row = {"n": len(samples_ms), "p50_ms": pct(samples_ms, 50), "p99_ms": pct(samples_ms, 99),
           "mean_ms": statistics.fmean(samples_ms)}
    if wall_s:
        row["per_s"] = len(samples_ms) / wall_s
    extra = f"  {row['per_s']:7.1f}/s" if wall_s else ""
    print(f"{name:44} n={row['n']:<5} p50={row['p50_ms']:8.2f} ms  "
          f"p99={row['p99_ms']:8.2f} ms{extra}", flush=True)
    return row


@contextmanager
def gateway(env: Mapping[str, str]) -> Iterator[str]:
    with gateway_process(env) as (url, _):
        yield url


@contextmanager
def gateway_process(env: Mapping[str, str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A ``faas serve`` on a free port: (its URL, its process)."""
    port = free_port()
    full = {**os.environ, "FAAS_GATEWAY_PORT": str(port), "FAAS_LOG": "warn", **env}
    proc = subprocess.Popen([sys.executable, "-m", "faas.cli", "serve"], env=full)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(60)


class RawClient:
    """A minimal keep-alive HTTP/1.1 client over asyncio streams.

    httpx costs about a millisecond of CPU per request; on a 2-core machine
    that shares the cores with the server it would cap the measured rate.
    This speaks just enough HTTP for the gateway's responses (Content-Length
    bodies) and keeps one connection per concurrent worker.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{extra}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        message = head.encode() + body
        if self._idle:
            conn = self._idle.pop()
            try:
                return await self._exchange(conn, message)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                conn[1].close()
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
                # The server closed the idle connection (its keep-alive timeout) before
                # reading the request: send it again on a new one.
        return await self._exchange(await asyncio.open_connection(self.host, self.port),
                                    message)

    async def _exchange(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                        message: bytes) -> tuple[int, bytes]:
        reader, writer = conn
        writer.write(message)
        status_line = await reader.readuntil(b"\r\n")
        length = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        data = await reader.readexactly(length)
        self._idle.append(conn)
        return int(status_line.split()[1]), data

    async def aclose(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def load(call: Callable[[], Awaitable[None]], total: int,
               concurrency: int) -> tuple[list[float], float]:
    """Run ``call`` ``total`` times with ``concurrency`` workers: (latencies ms, wall s)."""
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - t) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start
