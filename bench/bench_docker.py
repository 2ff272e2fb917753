"""Docker tier latency: the platform's invoke of ``true`` beside a bare ``docker run``, one run.

Three ways to run ``true`` in a fresh ``--network none`` container, interleaved
round by round (in a shuffled order) so drift on this noisy host hits all
alike:

* ``bare``: ``docker run --rm --network none IMAGE true`` (the CLI; the floor);
* ``executor``: ``DockerExecutor.run`` called directly (all the platform's
  limits and hardening, no HTTP);
* ``http``: ``POST /functions/bench/invoke`` on a real gateway (uvicorn in a
  child process running ``create_app`` with the docker executor).

Prints p50/p99/mean per way and the ratios to ``bare`` (target: p50 ratio <= 1.2).

    .venv/bin/python bench/bench_docker.py [-n 40] [--image TAG] [--runtime runsc] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx

from common import pct
from faas.executors.docker import DockerExecutor
from faas.images.docker_image import DEFAULT_TAG, ensure_docker_image
from faas.models import ExecutionSpec, Limits

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port: int, image: str, runtime: str | None) -> None:
    """Child-process mode: a real gateway whose only executor is docker."""
    import uvicorn

    from faas.config import Settings
    from faas.gateway.app import create_app

    settings = Settings(port=port, default_executor="docker", executors=("docker",),
                        log_level="warning")
    executor = DockerExecutor(default_image=image, runtime=runtime)
    app = create_app(settings, {"docker": executor})
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextlib.contextmanager
def gateway(image: str, runtime: str | None) -> Iterator[str | None]:
    """Start the gateway child; yield its URL, or None (with a note) if it cannot start."""
    try:
        import faas.gateway.app  # noqa: F401
    except ImportError as exc:
        print(f"http: skipped, no gateway in this tree ({exc})")
        yield None
        return
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--image", image,
         *(["--runtime", runtime] if runtime else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                print(f"http: skipped, the gateway exited: {err[-1000:]}")
                yield None
                return
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                print("http: skipped, the gateway did not answer within 30s")
                yield None
                return
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def bench(n: int, warmup: int, image: str, runtime: str | None) -> dict[str, list[float]]:
    loop = asyncio.get_running_loop()
    executor = DockerExecutor(default_image=image, runtime=runtime)
    runtime_args = ["--runtime", runtime] if runtime else []
    samples: dict[str, list[float]] = {"bare": [], "executor": [], "http": []}

    async def bare() -> None:
        proc = await asyncio.create_subprocess_exec(
            "docker", "run", "--rm", "--network", "none", *runtime_args, image, "true",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"bare docker run failed: {err.decode()}")

    async def direct() -> None:
        spec = ExecutionSpec(request_id="bench", function_id="bench", command=("true",),
                             env={}, payload=b"", deadline=loop.time() + 60, limits=Limits())
        result = await executor.run(spec)
        if result.exit_code != 0:
            raise SystemExit(f"executor run failed: {result}")

    ways: dict[str, Callable[[], Awaitable[None]]] = {"bare": bare, "executor": direct}
    with gateway(image, runtime) as url:
        client = httpx.AsyncClient(base_url=url or "http://unused", timeout=60)
        if url is not None:
            async def http() -> None:
                response = await client.post(
                    "/functions/bench/invoke",
                    json={"command": ["true"], "image": image, "executor": "docker"},
                )
                if response.status_code != 200 or response.json().get("exit_code") != 0:
                    raise SystemExit(f"HTTP invoke failed: {response.status_code} {response.text}")

            ways["http"] = http
        try:
            for round_no in range(warmup + n):
                order = list(ways.items())
                random.shuffle(order)
                for name, way in order:
                    started = time.perf_counter()
                    await way()
                    if round_no >= warmup:
                        samples[name].append((time.perf_counter() - started) * 1000)
        finally:
            await client.aclose()
            await executor.aclose()
    return {k: v for k, v in samples.items() if v}


def report(samples: dict[str, list[float]], image: str, runtime: str | None) -> dict[str, object]:
    base = samples["bare"]
    b50, b99 = statistics.median(base), pct(base, 99)
    print(f"docker bench: image={image} runtime={runtime or 'default'} rounds={len(base)} "
          f"cpus={os.cpu_count()}")
    print(f"{'way':10} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
          f"{'p50 ratio':>10} {'p99 ratio':>10}")
    out: dict[str, object] = {"image": image, "runtime": runtime, "rounds": len(base)}
    for name, values in samples.items():
        p50, p99 = statistics.median(values), pct(values, 99)
        mean = statistics.fmean(values)
        print(f"{name:10} {p50:8.1f} {p99:8.1f} {mean:8.1f} {p50 / b50:9.2f}x {p99 / b99:9.2f}x")
        out[name] = {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "mean_ms": round(mean, 2),
                     "p50_ratio": round(p50 / b50, 3), "p99_ratio": round(p99 / b99, 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=40, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--image", default=DEFAULT_TAG)
    parser.add_argument("--runtime", help="OCI runtime for both ways (e.g. runsc)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.image, args.runtime)
        return 0
    subprocess.run([str(REPO / "scripts" / "ensure-dockerd.sh")], check=True)
    if args.image == DEFAULT_TAG:
        from faas.images.rootfs import ensure_rootfs_tar

        ensure_docker_image(ensure_rootfs_tar(), DEFAULT_TAG)
    samples = asyncio.run(bench(args.n, args.warmup, args.image, args.runtime))
    numbers = report(samples, args.image, args.runtime)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
