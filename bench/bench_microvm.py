"""MicroVM starts: cold boot, snapshot restore and pre-started pools, beside the floor, in one run.

* floor: the VMM (QEMU, same kernel, initramfs, root disk, devices and
  accelerator as the executor) started by hand and timed to the first bytes
  of the agent's HELLO on the channel, with no platform code in the loop;
* cold: ``QemuExecutor.run`` of ``true`` booting a fresh VM (no pool, no
  snapshot), and the same through a real gateway (``POST .../invoke``);
  these three are interleaved round by round so drift hits them alike;
* restored: ``run(true)`` in a VM restored from the saved snapshot;
* pooled: ``run(true)`` in a pre-started VM (the pool is refilled, untimed,
  before each timed invocation);
* throughput: invocations/s of each kind with 2 in flight;
* sustained: invocations of ``true`` offered at a steady rate for a while to a
  pooled executor that refills in the background; prints the achieved rate.

Targets (issue 5): pooled p50 <= 50 ms, restore start <= 300 ms, sustained
>= 3 invocations/s on 2 cores.

    .venv/bin/python bench/bench_microvm.py [--rounds N] [--no-http] [--rate R] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from common import pct
from faas.errors import FaasError
from faas.executors.microvm import MicroVMSettings, QemuExecutor
from faas.executors.microvm.config import VMConfig
from faas.executors.microvm.qemu import QemuDriver, kvm_canary, qemu_binary
from faas.images.build import build_images, guest_images
from faas.images.disk import make_scratch_disk
from faas.models import ExecutionSpec, InvocationResult, Limits


def floor_once(driver: QemuDriver, config: VMConfig, template: Path) -> float:
    """Seconds from starting QEMU to the first HELLO bytes, by hand."""
    workdir = Path(tempfile.mkdtemp(prefix="faas-floor-"))
    try:
        shutil.copyfile(template, workdir / "scratch.ext4")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(workdir / "agent.sock"))
        listener.listen(1)
        argv = driver.command(config, workdir)
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            listener.settimeout(30)
            conn, _ = listener.accept()
            conn.settimeout(30)
            if conn.recv(4) != b"FAAS":
                raise SystemExit("floor: the guest did not say HELLO")
            elapsed = time.perf_counter() - started
            conn.close()
        finally:
            proc.kill()
            proc.wait()
            listener.close()
        return elapsed
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def invoke_true(executor: QemuExecutor) -> InvocationResult:
    loop = asyncio.get_running_loop()
    spec = ExecutionSpec(request_id="bench", function_id="bench", command=("true",), env={},
                         payload=b"", deadline=loop.time() + 60, limits=Limits())
    result = await executor.run(spec)
    if result.exit_code != 0:
        raise SystemExit(f"executor run failed: {result}")
    return result


async def executor_once(executor: QemuExecutor) -> float:
    started = time.perf_counter()
    await invoke_true(executor)
    return time.perf_counter() - started


async def timed_kind(executor: QemuExecutor, kind: str) -> tuple[float, float]:
    """(seconds to invoke, seconds spent starting) of one run that must be ``kind``."""
    started = time.perf_counter()
    result = await invoke_true(executor)
    elapsed = time.perf_counter() - started
    if result.start_kind != kind:
        raise SystemExit(f"expected a {kind} start, got {result.start_kind}")
    return elapsed, (result.start_ms or 0.0) / 1000


async def throughput(executor: QemuExecutor, count: int, parallel: int = 2) -> float:
    """Invocations per second with ``parallel`` in flight."""
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            queue.pop()
            await invoke_true(executor)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    return count / (time.perf_counter() - started)


@dataclass
class Sustained:
    offered: int
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


async def sustained(executor: QemuExecutor, rate: float, seconds: float) -> Sustained:
    """Offer ``rate`` invocations/s for ``seconds`` (open loop); what came of them."""
    loop = asyncio.get_running_loop()
    out = Sustained(offered=int(rate * seconds))

    async def one() -> None:
        t0 = time.perf_counter()
        try:
            result = await invoke_true(executor)
        except (FaasError, SystemExit) as exc:
            out.failures.append(str(exc)[:200])
            return
        out.latencies.append(time.perf_counter() - t0)
        kind = result.start_kind or "?"
        out.kinds[kind] = out.kinds.get(kind, 0) + 1

    tasks = []
    start = loop.time()
    for i in range(out.offered):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        tasks.append(asyncio.ensure_future(one()))
    await asyncio.gather(*tasks)
    out.elapsed = loop.time() - start
    return out


def http_once(url: str) -> float:
    started = time.perf_counter()
    r = httpx.post(f"{url}/functions/bench/invoke", timeout=60,
                   json={"command": ["true"], "executor": "qemu"})
    elapsed = time.perf_counter() - started
    if r.status_code != 200 or r.json()["exit_code"] != 0:
        raise SystemExit(f"http invoke failed: {r.status_code} {r.text}")
    return elapsed


def start_gateway(run_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the gateway did not start")


def serve(port: int, run_dir: Path) -> None:
    import uvicorn

    from faas.config import Settings
    from faas.gateway.app import create_app

    executor = QemuExecutor(MicroVMSettings(run_dir=run_dir, pool_max=0, snapshots=False))
    settings = Settings(port=port, default_executor="qemu", executors=("qemu",))
    uvicorn.run(create_app(settings, {"qemu": executor}), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


async def main(rounds: int, with_http: bool, rate: float, seconds: float) -> None:
    build_images()
    images = guest_images()
    binary = qemu_binary()
    if binary is None:
        raise SystemExit("qemu-system-x86_64 is not installed")
    kvm = await kvm_canary(binary, images)
    accel = "kvm" if kvm.ok else "tcg"
    driver = QemuDriver(binary, accel)
    run_dir = Path(tempfile.mkdtemp(prefix="faas-bench-"))
    base = MicroVMSettings(run_dir=run_dir, pool_max=0, snapshots=False)
    config = base.vm_config(images, Limits())
    template = run_dir / "template-scratch.ext4"
    make_scratch_disk(template, config.scratch_bytes)
    cold = QemuExecutor(base, images)
    restoring = QemuExecutor(replace(base, snapshots=True), images)
    pooled = QemuExecutor(replace(base, snapshots=True, pool_min=2, pool_max=2), images)
    steady = QemuExecutor(replace(base, snapshots=True, pool_min=1, pool_max=4), images)
    gateway = start_gateway(run_dir) if with_http else None
    samples: dict[str, list[float]] = {"floor": [], "cold": []}
    if gateway:
        samples["http"] = []
    samples.update({"restored": [], "restore_start": [], "pooled": [], "pooled_start": []})
    rates: dict[str, float] = {}
    try:
        # One warm-up of each (page cache, canary file, snapshot), not counted.
        floor_once(driver, config, template)
        await executor_once(cold)
        if gateway:
            http_once(gateway[1])
        await executor_once(restoring)
        for _ in range(rounds):
            samples["floor"].append(floor_once(driver, config, template))
            samples["cold"].append(await executor_once(cold))
            if gateway:
                samples["http"].append(await asyncio.to_thread(http_once, gateway[1]))
        for _ in range(rounds):
            total, start = await timed_kind(restoring, "restored")
            samples["restored"].append(total)
            samples["restore_start"].append(start)
        for _ in range(rounds):
            await pooled.prewarm(ready=2)
            await asyncio.sleep(0.2)  # let the refill settle: time the invocation only
            total, start = await timed_kind(pooled, "warm")
            samples["pooled"].append(total)
            samples["pooled_start"].append(start)
        await pooled.aclose()
        rates["cold"] = await throughput(cold, max(4, rounds))
        rates["restored"] = await throughput(restoring, 2 * rounds)
        await steady.prewarm(ready=1)
        result = await sustained(steady, rate, seconds)
    finally:
        for executor in (cold, restoring, pooled, steady):
            await executor.aclose()
        if gateway:
            gateway[0].terminate()
            gateway[0].wait(30)
        shutil.rmtree(run_dir, ignore_errors=True)
    floor_p50 = statistics.median(samples["floor"])
    print(f"microVM starts, QEMU -M microvm accel={accel}, {rounds} rounds, "
          f"{os.cpu_count()} host CPUs, invoke of `true`")
    print(f"{'':34} {'p50 ms':>9} {'p99 ms':>9} {'p50/floor':>10}")
    labels = {"floor": "floor (VMM boot to HELLO)", "cold": "cold: executor run(true)",
              "http": "cold: HTTP invoke(true)", "restored": "restored: executor run(true)",
              "restore_start": "  of which restore start", "pooled": "pooled: executor run(true)",
              "pooled_start": "  of which pool hand-out"}
    for name, values in samples.items():
        p50 = statistics.median(values)
        print(f"{labels[name]:34} {p50 * 1000:9.1f} {pct(values, 99) * 1000:9.1f} "
              f"{p50 / floor_p50:10.3f}")
    print("throughput, 2 in flight: " + ", ".join(
        f"{kind} {value:.2f}/s" for kind, value in rates.items()))
    lat, done = result.latencies, len(result.latencies)
    achieved = done / result.elapsed
    print(f"sustained: offered {rate:g}/s for {seconds:g} s ({result.offered} invocations), "
          f"completed {done} in {result.elapsed:.1f} s = {achieved:.2f}/s achieved; "
          f"starts {result.kinds}; failed {len(result.failures)}"
          + (f"; latency p50 {statistics.median(lat) * 1000:.0f} ms "
             f"p99 {pct(lat, 99) * 1000:.0f} ms" if lat else ""))
    for failure in result.failures[:3]:
        print(f"  failure: {failure}")
    pooled_p50 = statistics.median(samples["pooled"]) * 1000
    restore_p50 = statistics.median(samples["restore_start"]) * 1000
    print(f"targets: pooled p50 {pooled_p50:.1f} ms (<= 50: "
          f"{'met' if pooled_p50 <= 50 else 'MISSED'}); restore start p50 {restore_p50:.1f} ms "
          f"(<= 300: {'met' if restore_p50 <= 300 else 'MISSED'}); sustained "
          f"{achieved:.2f}/s (>= 3: {'met' if achieved >= 3 else 'MISSED'})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--rate", type=float, default=3.0, help="sustained offered rate, /s")
    parser.add_argument("--seconds", type=float, default=60.0, help="sustained run length")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "RUN_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
    else:
        asyncio.run(main(args.rounds, not args.no_http, args.rate, args.seconds))
