"""MicroVM cold start: the platform beside its floor, in one run.

* floor: the VMM (QEMU, same kernel, initramfs, root disk, devices and
  accelerator as the executor) started by hand and timed to the first bytes
  of the agent's HELLO on the channel, with no platform code in the loop;
* executor: ``QemuExecutor.run`` of ``true`` (fresh VM, scratch disk, boot,
  request, reply, teardown);
* http: ``POST /functions/bench/invoke`` of ``true`` with ``"executor": "qemu"``
  to a real gateway process.

The three are interleaved round by round so drift hits them alike. Prints
p50/p99 of each and the ratios to the floor.

    .venv/bin/python bench/bench_microvm.py [--rounds N] [--no-http]
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
from pathlib import Path

import httpx

from faas.executors.microvm import MicroVMSettings, QemuExecutor
from faas.executors.microvm.config import VMConfig
from faas.executors.microvm.qemu import QemuDriver, kvm_canary, qemu_binary
from faas.images.build import build_images, guest_images
from faas.images.disk import make_scratch_disk
from faas.models import ExecutionSpec, Limits


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


async def executor_once(executor: QemuExecutor) -> float:
    loop = asyncio.get_running_loop()
    spec = ExecutionSpec(request_id="bench", function_id="bench", command=("true",), env={},
                         payload=b"", deadline=loop.time() + 60, limits=Limits())
    started = time.perf_counter()
    result = await executor.run(spec)
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"executor run failed: {result}")
    return elapsed


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

    executor = QemuExecutor(MicroVMSettings(run_dir=run_dir))
    settings = Settings(port=port, default_executor="qemu", executors=("qemu",))
    uvicorn.run(create_app(settings, {"qemu": executor}), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(rounds: int, with_http: bool) -> None:
    build_images()
    images = guest_images()
    binary = qemu_binary()
    if binary is None:
        raise SystemExit("qemu-system-x86_64 is not installed")
    kvm = await kvm_canary(binary, images)
    accel = "kvm" if kvm.ok else "tcg"
    driver = QemuDriver(binary, accel)
    run_dir = Path(tempfile.mkdtemp(prefix="faas-bench-"))
    settings = MicroVMSettings(run_dir=run_dir)
    config = settings.vm_config(images, Limits())
    template = run_dir / "template-scratch.ext4"
    make_scratch_disk(template, config.scratch_bytes)
    executor = QemuExecutor(settings, images)
    gateway = start_gateway(run_dir) if with_http else None
    samples: dict[str, list[float]] = {"floor": [], "executor": []}
    if gateway:
        samples["http"] = []
    try:
        # One warm-up of each (page cache, canary file), not counted.
        floor_once(driver, config, template)
        await executor_once(executor)
        if gateway:
            http_once(gateway[1])
        for _ in range(rounds):
            samples["floor"].append(floor_once(driver, config, template))
            samples["executor"].append(await executor_once(executor))
            if gateway:
                samples["http"].append(await asyncio.to_thread(http_once, gateway[1]))
    finally:
        await executor.aclose()
        if gateway:
            gateway[0].terminate()
            gateway[0].wait(30)
        shutil.rmtree(run_dir, ignore_errors=True)
    floor_p50 = statistics.median(samples["floor"])
    print(f"microVM cold start, QEMU -M microvm accel={accel}, {rounds} rounds, "
          f"{os.cpu_count()} host CPUs")
    print(f"{'':28} {'p50 ms':>9} {'p99 ms':>9} {'p50/floor':>10}")
    labels = {"floor": "floor (VMM boot to HELLO)", "executor": "executor run(true)",
              "http": "HTTP invoke(true)"}
    for name, values in samples.items():
        p50 = statistics.median(values)
        print(f"{labels[name]:28} {p50 * 1000:9.1f} {pct(values, 0.99) * 1000:9.1f} "
              f"{p50 / floor_p50:10.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "RUN_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
    else:
        asyncio.run(main(args.rounds, not args.no_http))
