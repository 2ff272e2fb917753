"""Namespace sandbox: the platform's HTTP invoke of `true` beside bare bubblewrap.

    python bench/bench_sandbox.py [--n 300]

(a) bare bubblewrap running `true` with the very argv the executor uses (same
namespaces, mounts and seccomp filter), spawned from Python, sequentially;
(b) the platform: POST /functions/bench/invoke {"command": ["true"]} over
real HTTP to a real gateway, sequentially and at concurrency 8 and 32;
(c) GET /healthz latency while 50 invocations run.
Prints p50/p99, invocations per second and the ratio b/a of sequential p50s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time

from common import RawClient, gateway, load, summary
from faas.executors.sandbox import SandboxExecutor


def bare_bwrap(n: int) -> list[float]:
    ex = SandboxExecutor()
    argv = [*ex.argv_for(64 << 20), *ex.policy.call_argv(None)]
    samples = []
    for _ in range(n):
        fd = ex.seccomp_fd()
        t = time.perf_counter()
        subprocess.run([*argv, "--seccomp", str(fd), "--", "true"], pass_fds=(fd, ex.empty_fd),
                       check=True)
        samples.append((time.perf_counter() - t) * 1000)
        os.close(fd)
    return samples


async def platform(url: str, n: int) -> dict[str, dict[str, float]]:
    rows = {}
    host, port = url.removeprefix("http://").split(":")
    client = RawClient(host, int(port))
    body = json.dumps({"command": ["true"]}).encode()

    async def invoke() -> None:
        status, data = await client.request("POST", "/functions/bench/invoke", body)
        if status != 200 or json.loads(data)["exit_code"] != 0:
            raise SystemExit(f"bad response {status}: {data[:300]!r}")

    await load(invoke, 20, 4)  # warm up
    for conc, total in ((1, n), (8, n * 2), (32, n * 2)):
        lat, wall = await load(invoke, total, conc)
        rows[f"c{conc}"] = summary(f"(b) HTTP invoke `true`, concurrency {conc}", lat, wall)

    sleeper = json.dumps({"command": ["sleep", "3"]}).encode()
    background = [asyncio.ensure_future(RawClient(host, int(port)).request(
        "POST", "/functions/bg/invoke", sleeper)) for _ in range(50)]
    await asyncio.sleep(0.5)
    health: list[float] = []
    while not all(t.done() for t in background) and len(health) < 400:
        t0 = time.perf_counter()
        status, _ = await client.request("GET", "/healthz")
        assert status == 200
        health.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.005)
    codes = [status for status, _ in await asyncio.gather(*background)]
    rows["healthz"] = summary("(c) /healthz while 50 invocations run", health)
    rows["healthz"]["background_ok"] = codes.count(200)
    await client.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    print(f"host: {os.cpu_count()} cores", flush=True)
    bare = summary("(a) bare bwrap `true` (same argv)", bare_bwrap(args.n))
    env = {"FAAS_MAX_CONCURRENCY": "64", "FAAS_MAX_QUEUE": "256", "FAAS_EXECUTORS": "sandbox"}
    with gateway(env) as url:
        rows = asyncio.run(platform(url, args.n))
    ratio = rows["c1"]["p50_ms"] / bare["p50_ms"]
    print(f"ratio (b) sequential p50 / (a) p50 = {ratio:.2f}x  (target <= 2.0x)")
    print(f"throughput at concurrency 32 = {rows['c32']['per_s']:.0f}/s  (target >= 150/s)")
    print(f"/healthz p99 under 50 running = {rows['healthz']['p99_ms']:.1f} ms  (target < 50 ms)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bare": bare, **rows, "ratio": ratio}, f, indent=2)


if __name__ == "__main__":
    main()
