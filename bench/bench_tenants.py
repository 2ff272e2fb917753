"""Tenant isolation under a flood: does one tenant at 10x its quota slow another down?

    python bench/bench_tenants.py [--n 200] [--rounds 3] [--rate 20] [--concurrency 2]

One real ``faas serve`` (sandbox tier, SQLite store) and two tenants with keys made
on its store before it starts: tenant A with quotas ``rate_per_s=--rate`` (burst the
same) and ``max_concurrency=--a-concurrency``, tenant B with the server's defaults.
B sends ``--n`` sync calls of ``true`` from ``--concurrency`` clients in each of three
phases, ``--rounds`` times (the phases alternate so host drift hits all alike):

(a) B alone;
(b) A calling at its quota (``--rate`` calls/s, open loop, evenly spaced);
(c) A flooding at ``--flood``x its quota (most of its calls answered 429).

It prints B's p50/p90/p99 in each phase, what A got (statuses), and the issue's target:
one tenant flooding at 10x its quota must not raise another tenant's p99 by more than
20% (B's p99 (c)/(b) <= 1.20); (c)/(a) is printed for information. The load is sent
with ``common.RawClient`` (httpx's CPU per request would cap the rate on 2 cores);
A's calls come from a process of their own, so that B's latency is not measured
through the event loop that sends A's flood.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from common import RawClient, gateway, load, pct
from faas.store import open_store
from faas.store.tenant_records import KeyInfo
from faas.tenancy.keys import new_key

TARGET = 1.20
TRUE = json.dumps({"command": ["true"]}).encode()
#: A's requests in flight at most (an open loop must not grow without bound)
MAX_OUTSTANDING = 200


async def make_tenants(data_dir: Path, rate: float, a_concurrency: int) -> dict[str, str]:
    """Tenants a (with quotas) and b (defaults) and an invoker key of each: tenant -> key."""
    store = await open_store(None, data_dir)
    keys: dict[str, str] = {}
    try:
        quotas = {"a": {"rate_per_s": rate, "burst": max(1, int(rate)),
                        "max_concurrency": a_concurrency}, "b": {}}
        for tenant, overrides in quotas.items():
            await store.tenants.create_tenant(tenant, overrides)
            key = new_key()
            await store.tenants.create_key(KeyInfo(key.key_id, tenant, "invoker", "bench",
                                                   key.key_hash, time.time_ns() // 1000))
            keys[tenant] = key.key
    finally:
        await store.close()
    return keys


def raw_client(url: str) -> RawClient:
    host, port = url.removeprefix("http://").split(":")
    return RawClient(host, int(port))


async def b_call(client: RawClient, auth: dict[str, str]) -> None:
    status, data = await client.request("POST", "/functions/fn/invoke", TRUE, auth)
    if status != 200 or json.loads(data)["exit_code"] != 0:
        raise SystemExit(f"tenant B got {status}: {data[:300]!r}")


async def a_traffic(client: RawClient, auth: dict[str, str], per_s: float,
                    stop: asyncio.Event, statuses: Counter[str]) -> None:
    """Open loop: one call every 1/per_s seconds until ``stop``, each in its own task."""
    pending: set[asyncio.Task[None]] = set()

    async def one() -> None:
        status, _ = await client.request("POST", "/functions/fn/invoke", TRUE, auth)
        statuses[str(status)] += 1

    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while not stop.is_set():
        if len(pending) < MAX_OUTSTANDING:
            task = asyncio.ensure_future(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
        else:
            statuses["not sent (too many in flight)"] += 1
        sent += 1
        delay = start + sent / per_s - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    if pending:
        await asyncio.wait(pending, timeout=30)


def a_process(url: str, key: str, per_s: float, ready: Any, stop: Any, out: Any) -> None:
    """Tenant A's traffic in a process of its own (so B's client loop is not A's too)."""
    async def run() -> None:
        client = raw_client(url)
        statuses: Counter[str] = Counter()
        done = asyncio.Event()

        async def watch() -> None:
            await asyncio.to_thread(stop.wait)
            done.set()

        watcher = asyncio.ensure_future(watch())
        ready.set()
        started = time.perf_counter()
        await a_traffic(client, {"Authorization": f"Bearer {key}"}, per_s, done, statuses)
        await watcher
        await client.aclose()
        out.put((dict(statuses), time.perf_counter() - started))
    asyncio.run(run())


async def phase(url: str, keys: dict[str, str], n: int, concurrency: int,
                a_per_s: float | None) -> tuple[list[float], Counter[str], float]:
    """B's ``n`` calls (latencies, ms) while A sends ``a_per_s`` calls/s (None: silent);
    A's statuses and the seconds it sent for."""
    b_client = raw_client(url)
    b_auth = {"Authorization": f"Bearer {keys['b']}"}
    statuses: Counter[str] = Counter()
    wall = 0.0
    context = multiprocessing.get_context("spawn")
    ready, stop, out = context.Event(), context.Event(), context.Queue()
    flood = None
    if a_per_s is not None:
        flood = context.Process(target=a_process,
                                args=(url, keys["a"], a_per_s, ready, stop, out))
        flood.start()
        await asyncio.to_thread(ready.wait, 60)  # the process has started (its imports)
        await asyncio.sleep(1.0)  # and A's load is steady before B is measured
    lat, _ = await load(partial(b_call, b_client, b_auth), n, concurrency)
    stop.set()
    if flood is not None:
        got, wall = await asyncio.to_thread(out.get, True, 60)
        statuses.update(got)
        await asyncio.to_thread(flood.join, 30)
    await b_client.aclose()
    return lat, statuses, wall


def show(name: str, samples: list[float]) -> dict[str, float]:
    row = {"n": len(samples), "p50_ms": pct(samples, 50), "p90_ms": pct(samples, 90),
           "p99_ms": pct(samples, 99)}
    print(f"{name:46} n={len(samples):<5} p50={row['p50_ms']:7.2f} ms  "
          f"p90={row['p90_ms']:7.2f} ms  p99={row['p99_ms']:7.2f} ms", flush=True)
    return row


async def measure(url: str, keys: dict[str, str], args: argparse.Namespace
                  ) -> dict[str, Any]:
    plan = {"a": None, "b": args.rate, "c": args.rate * args.flood}
    samples: dict[str, list[float]] = {name: [] for name in plan}
    statuses: dict[str, Counter[str]] = {name: Counter() for name in plan}
    walls: dict[str, float] = dict.fromkeys(plan, 0.0)
    await phase(url, keys, 40, args.concurrency, None)  # warm up
    order = list(plan)
    for _ in range(args.rounds):
        for name in order:
            lat, got, wall = await phase(url, keys, args.n, args.concurrency, plan[name])
            samples[name] += lat
            statuses[name] += got
            walls[name] += wall
        order.reverse()
    return {"samples": samples, "statuses": statuses, "walls": walls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="B's calls per phase and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="B's clients")
    parser.add_argument("--rate", type=float, default=20.0, help="A's rate quota, calls/s")
    parser.add_argument("--a-concurrency", type=int, default=2, help="A's concurrency quota")
    parser.add_argument("--flood", type=float, default=10.0, help="A's load in (c), x quota")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    print(f"host: {os.cpu_count()} cores; sandbox tier, SQLite; tenant A: rate "
          f"{args.rate:g}/s, concurrency {args.a_concurrency}; tenant B: the defaults, "
          f"{args.concurrency} clients", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="faas-bench-tenants-", dir="/tmp"))
    tmp.chmod(0o711)
    try:
        keys = asyncio.run(make_tenants(tmp / "data", args.rate, args.a_concurrency))
        env = {"FAAS_EXECUTORS": "sandbox", "FAAS_DATA_DIR": str(tmp / "data"),
               "FAAS_MAX_CONCURRENCY": "16", "FAAS_MAX_QUEUE": "64"}
        with gateway(env) as url:
            started = time.perf_counter()
            result = asyncio.run(measure(url, keys, args))
            wall = time.perf_counter() - started
        rows = {}
        labels = {"a": "(a) B alone", "b": f"(b) B, A at its quota ({args.rate:g}/s)",
                  "c": f"(c) B, A flooding at {args.flood:g}x ({args.rate * args.flood:g}/s)"}
        for name, label in labels.items():
            rows[name] = show(label, result["samples"][name])
        for name in ("b", "c"):
            got = result["statuses"][name]
            total = sum(got.values())
            per_s = total / result["walls"][name]
            print(f"    A in ({name}): {total} calls ({per_s:.1f}/s sent): "
                  + ", ".join(f"{k}: {v}" for k, v in sorted(got.items())), flush=True)
        c_b = rows["c"]["p99_ms"] / rows["b"]["p99_ms"]
        c_a = rows["c"]["p99_ms"] / rows["a"]["p99_ms"]
        print(f"B's p99: (c) {rows['c']['p99_ms']:.2f} ms beside (b) {rows['b']['p99_ms']:.2f} "
              f"ms: (c)/(b) = {c_b:.3f}x (target <= {TARGET:.2f}x: "
              f"{'PASS' if c_b <= TARGET else 'MISS'})")
        print(f"B's p99 (c)/(a) = {c_a:.3f}x (information: against B alone)")
        print(f"measured in {wall:.0f} s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rows": rows, "c_over_b": c_b, "c_over_a": c_a,
                           "a_statuses": {k: dict(v) for k, v in result["statuses"].items()}},
                          f, indent=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
