"""Gateway memory under large request bodies: peak RSS with N concurrent maximum payloads.

Target (issue "hostile callers"): at any concurrency, the server's peak RSS
stays below idle RSS + 4 x the payload limit. The floor printed beside it is
the payload limit itself (one payload must be held to be run at all).

For each concurrency the server's high-water mark is reset
(``/proc/PID/clear_refs`` = 5), N clients each send one maximum-size
payload (base64) to ``sh -c 'cat >/dev/null'`` at once, and VmHWM is read
after all answered. Run: ``cd bench && ../.venv/bin/python bench_body_memory.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from common import RawClient, gateway_process

MiB = 1024 * 1024


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


async def burst(url: str, body: bytes, n: int) -> dict[int, int]:
    host, port = url.removeprefix("http://").split(":")
    clients = [RawClient(host, int(port)) for _ in range(n)]
    results = await asyncio.gather(
        *(c.request("POST", "/functions/mem/invoke", body) for c in clients))
    for c in clients:
        await c.aclose()
    codes: dict[int, int] = {}
    for status, _ in results:
        codes[status] = codes.get(status, 0) + 1
    return codes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    limit = 6 * MiB
    body = json.dumps({"command": ["sh", "-c", "cat >/dev/null"],
                       "payload": base64.b64encode(os.urandom(limit)).decode()}).encode()
    env = {"FAAS_EXECUTORS": "sandbox", "FAAS_MAX_CONCURRENCY": "32", "FAAS_MAX_QUEUE": "64"}
    rows: list[dict[str, Any]] = []
    with gateway_process(env) as (url, proc):
        asyncio.run(burst(url, json.dumps({"command": ["true"]}).encode(), 4))  # warm up
        time.sleep(0.5)
        idle_kib = status_kib(proc.pid, "VmRSS")
        print(f"host: {os.cpu_count()} cores; payload limit {limit // MiB} MiB "
              f"(body {len(body) / MiB:.1f} MiB as base64); idle RSS {idle_kib / 1024:.1f} MiB",
              flush=True)
        for n in (int(x) for x in args.concurrency.split(",")):
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
            base_kib = status_kib(proc.pid, "VmRSS")
            started = time.perf_counter()
            codes = asyncio.run(burst(url, body, n))
            wall = time.perf_counter() - started
            peak_kib = status_kib(proc.pid, "VmHWM")
            above = (peak_kib - idle_kib) / 1024
            ratio = above * MiB / limit
            print(f"concurrency {n:3}: answers {codes}, peak RSS {peak_kib / 1024:7.1f} MiB = "
                  f"idle + {above:6.1f} MiB = {ratio:4.2f}x the payload limit "
                  f"(target < 4.00x; floor 1.00x) in {wall:5.2f} s "
                  f"(RSS before the burst {base_kib / 1024:.1f} MiB)", flush=True)
            rows.append({"concurrency": n, "codes": codes, "idle_mib": idle_kib / 1024,
                         "peak_mib": peak_kib / 1024, "ratio": ratio, "wall_s": wall})
    worst = max(r["ratio"] for r in rows)
    print(f"worst peak above idle = {worst:.2f}x the payload limit (target < 4.00x): "
          f"{'met' if worst < 4 else 'MISSED'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
