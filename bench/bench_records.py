"""Invocation records and async calls on the sandbox tier: what keeping records costs.

    python bench/bench_records.py [--n 100] [--rounds 8] [--total 600] [--concurrency 32]

Two real ``faas serve`` processes, each with its own SQLite store: one with records
on (the default), one with ``FAAS_RECORDS=0``. In one run:

(a) sync latency of `true` at concurrency 1, records on vs off: ``--rounds`` blocks
    of ``--n`` calls, alternating between the servers (and which goes first) so that
    host drift hits both alike; p50/p90/p99 of each and the ratio of the p50s;
(b) throughput at ``--concurrency`` on the records-on server, ``--throughput-rounds``
    times each, alternating: sync calls (completed/s), then the same number of async
    calls (``Prefer: respond-async``) submitted as fast as the clients can:
    accepted/s (202s per second of submission) and completed/s (from the first
    submission to the last record's ``finished_at``; completion is watched with
    ``GET /invocations?function=&status=queued|running&limit=1``);
(c) the records each server wrote, counted by paging ``GET /invocations``: every
    async call is there and succeeded, every sync call on the records-on server is
    there, none on the other.
The load is sent with a raw keep-alive HTTP client (``common.RawClient``: httpx's
CPU per request would cap the rate on a 2-core host); listing uses httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from common import RawClient, gateway, load, pct

SYNC_TARGET = 1.10
ASYNC_TARGET = 0.9
TRUE = json.dumps({"command": ["true"]}).encode()
ASYNC = {"Prefer": "respond-async"}
FINAL = ("succeeded", "failed", "timed_out", "error", "cancelled")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def show(name: str, samples: list[float], wall_s: float | None = None) -> dict[str, float]:
    row = {"n": len(samples), "p50_ms": pct(samples, 50), "p90_ms": pct(samples, 90),
           "p99_ms": pct(samples, 99)}
    rate = ""
    if wall_s:
        row["per_s"] = len(samples) / wall_s
        rate = f"  {row['per_s']:7.1f}/s"
    print(f"{name:44} n={len(samples):<5} p50={row['p50_ms']:7.2f} ms  "
          f"p90={row['p90_ms']:7.2f} ms  p99={row['p99_ms']:7.2f} ms{rate}", flush=True)
    return row


def raw_client(url: str) -> RawClient:
    host, port = url.removeprefix("http://").split(":")
    return RawClient(host, int(port))


async def sync_call(client: RawClient, function_id: str) -> None:
    status, data = await client.request("POST", f"/functions/{function_id}/invoke", TRUE)
    if status != 200 or json.loads(data)["exit_code"] != 0:
        raise SystemExit(f"bad sync response {status}: {data[:300]!r}")


async def latency(urls: dict[str, str], n: int, rounds: int) -> dict[str, list[float]]:
    """(a): alternating blocks of ``n`` sequential calls on each server."""
    clients = {name: raw_client(url) for name, url in urls.items()}
    samples: dict[str, list[float]] = {name: [] for name in urls}
    for client in clients.values():
        await load(partial(sync_call, client, "seq-warm"), 20, 1)
    order = list(urls)
    for _ in range(rounds):
        for name in order:
            lat, _ = await load(partial(sync_call, clients[name], "seq"), n, 1)
            samples[name] += lat
        order.reverse()
    for client in clients.values():
        await client.aclose()
    return samples


async def count_where(http: httpx.AsyncClient, function_id: str,
                      status: str | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Every record of ``function_id`` (optionally of one status), paged 200 at a time."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"function": function_id, "limit": 200}
    if status is not None:
        params["status"] = status
    while True:
        r = await http.get("/invocations", params=params)
        r.raise_for_status()
        page = r.json()
        items += page["items"]
        if page["next_cursor"] is None:
            return len(items), items
        params["cursor"] = page["next_cursor"]


async def any_left(http: httpx.AsyncClient, function_id: str) -> bool:
    for status in ("queued", "running"):  # this order: a call moving on is still seen
        r = await http.get("/invocations", params={"function": function_id,
                                                   "status": status, "limit": 1})
        r.raise_for_status()
        if r.json()["items"]:
            return True
    return False


def epoch_s(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def async_round(client: RawClient, http: httpx.AsyncClient, function_id: str,
                      total: int, concurrency: int) -> dict[str, float]:
    """Submit ``total`` async calls from ``concurrency`` clients; wait for all to end."""
    ids: list[str] = []

    async def submit() -> None:
        status, data = await client.request("POST", f"/functions/{function_id}/invoke", TRUE,
                                            ASYNC)
        if status != 202:
            raise SystemExit(f"bad async response {status}: {data[:300]!r}")
        ids.append(json.loads(data)["invocation_id"])

    first = time.time()
    lat, accept_wall = await load(submit, total, concurrency)
    deadline = time.monotonic() + 600
    while await any_left(http, function_id):
        if time.monotonic() > deadline:
            raise SystemExit(f"async calls of {function_id} still not final after 600 s")
        await asyncio.sleep(0.1)
    count, records = await count_where(http, function_id)
    last = max(epoch_s(r["finished_at"]) for r in records if r["finished_at"])
    return {"accept_wall_s": accept_wall, "accept_p50_ms": pct(lat, 50),
            "accept_p99_ms": pct(lat, 99), "done_wall_s": last - first, "submitted": len(ids),
            "found": count, "succeeded": sum(r["status"] == "succeeded" for r in records),
            "unique": len(set(ids))}


async def throughput(url: str, total: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """(b): sync rounds and async rounds of ``total`` calls, alternating."""
    client = raw_client(url)
    sync_lat: list[float] = []
    sync_wall = 0.0
    rows: list[dict[str, float]] = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        await load(partial(sync_call, client, "tp-warm"), 64, concurrency)
        for r in range(rounds):
            lat, wall = await load(partial(sync_call, client, f"sync-{r}"), total, concurrency)
            sync_lat += lat
            sync_wall += wall
            rows.append(await async_round(client, http, f"async-{r}", total, concurrency))
    await client.aclose()
    return {"sync_lat": sync_lat, "sync_wall": sync_wall, "async": rows}


async def record_counts(url: str, expected: dict[str, int]) -> dict[str, int]:
    """(c): records per function id; waits (up to 30 s) for the background writer."""
    counts: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        for function_id, want in expected.items():
            deadline = time.monotonic() + (30 if want else 2)
            while True:
                counts[function_id], _ = await count_where(http, function_id)
                if counts[function_id] >= want or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100, help="sequential calls per block")
    parser.add_argument("--rounds", type=int, default=8, help="blocks on each server")
    parser.add_argument("--total", type=int, default=600, help="calls per throughput round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--throughput-rounds", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    print(f"host: {os.cpu_count()} cores; store: SQLite (a data folder per server)", flush=True)
    base = {"FAAS_EXECUTORS": "sandbox", "FAAS_MAX_CONCURRENCY": "64", "FAAS_MAX_QUEUE": "256"}
    tmp = Path(tempfile.mkdtemp(prefix="faas-bench-records-", dir="/tmp"))
    tmp.chmod(0o711)
    try:
        with ExitStack() as stack:
            urls = {"on": stack.enter_context(gateway(
                        {**base, "FAAS_DATA_DIR": str(tmp / "on")})),
                    "off": stack.enter_context(gateway(
                        {**base, "FAAS_DATA_DIR": str(tmp / "off"), "FAAS_RECORDS": "0"}))}
            started = time.perf_counter()
            seq = asyncio.run(latency(urls, args.n, args.rounds))
            on = show("(a) sync `true`, c=1, records ON", seq["on"])
            off = show("(a) sync `true`, c=1, records OFF", seq["off"])
            tp = asyncio.run(throughput(urls["on"], args.total, args.concurrency,
                                        args.throughput_rounds))
            sync = show(f"(b) sync `true`, c={args.concurrency}, records ON", tp["sync_lat"],
                        tp["sync_wall"])
            rows = tp["async"]
            submitted = sum(r["submitted"] for r in rows)
            accepted_s = submitted / sum(r["accept_wall_s"] for r in rows)
            completed_s = submitted / sum(r["done_wall_s"] for r in rows)
            for i, r in enumerate(rows):
                print(f"(b) async round {i}: {r['submitted']:.0f} submitted in "
                      f"{r['accept_wall_s']:.2f} s (202 p50={r['accept_p50_ms']:.1f} ms "
                      f"p99={r['accept_p99_ms']:.1f} ms), all final "
                      f"{r['done_wall_s']:.2f} s after the first", flush=True)
            print(f"(b) async `true`, c={args.concurrency}: accepted {accepted_s:7.1f}/s  "
                  f"completed {completed_s:7.1f}/s", flush=True)
            seq_calls = args.n * args.rounds
            tp_calls = args.total * args.throughput_rounds
            want_on = {"seq": seq_calls, **{f"sync-{i}": args.total for i in range(len(rows))}}
            counts_on = asyncio.run(record_counts(urls["on"], want_on))
            counts_off = asyncio.run(record_counts(urls["off"], {"seq": 0}))
            found = sum(r["found"] for r in rows)
            ok = sum(r["succeeded"] for r in rows)
            unique = sum(r["unique"] for r in rows)
            print(f"(c) records ON server: async {found}/{submitted} found ({unique} distinct "
                  f"ids), {ok} succeeded; sync c=1 {counts_on['seq']}/{seq_calls}; sync "
                  f"c={args.concurrency} {sum(counts_on[f'sync-{i}'] for i in range(len(rows)))}"
                  f"/{tp_calls}", flush=True)
            print(f"(c) records OFF server: sync c=1 {counts_off['seq']} records (expect 0)")
            wall = time.perf_counter() - started
        ratio = on["p50_ms"] / off["p50_ms"]
        async_ratio = completed_s / sync["per_s"]
        lost = found != submitted or ok != submitted or unique != submitted
        print(f"sync p50 records on/off = {ratio:.3f}x  (target <= {SYNC_TARGET:.2f}x: "
              f"{verdict(ratio <= SYNC_TARGET)})")
        print(f"async completed/s / sync completed/s at c={args.concurrency} = "
              f"{async_ratio:.2f}x  (target >= {ASYNC_TARGET}x: "
              f"{verdict(async_ratio >= ASYNC_TARGET)})")
        print(f"async records: {'none lost, all succeeded: PASS' if not lost else 'MISS'}")
        print(f"measured in {wall:.0f} s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"on": on, "off": off, "ratio": ratio, "sync": sync,
                           "async": rows, "accepted_per_s": accepted_s,
                           "completed_per_s": completed_s, "async_ratio": async_ratio,
                           "records_on": counts_on, "records_off": counts_off}, f, indent=2)
        if lost:
            raise SystemExit(1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
