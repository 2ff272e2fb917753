"""Deployed functions on the sandbox tier: a call of a function with a 1 MiB code bundle
beside an ad hoc call of the same command, in the same run.

    python bench/bench_deployed.py [--n 200]

(a) ad hoc: POST /functions/adhoc/invoke {"command": ["python3", "-c", HANDLER]};
(b) deployed: PUT /functions/bench (the handler plus 1 MiB of other files, as a tar.gz),
    then POST /functions/bench/invoke {} running `python3 /function/handler.py`, which
    reads its code from the read-only bundle mount.
The handler is the same code in both. Calls alternate (a), (b), (a), ... so both see the
same host. Prints the deploy time (upload, checks, unpack: a bundle is unpacked once, at
deploy), the first call after it, the p50/p99 of each and the ratio b/a of the p50s
beside its target (<= 1.15).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

from common import RawClient, gateway, pct, summary

HANDLER = "import sys\nsys.stdout.write(sys.stdin.read().upper())\n"
TARGET = 1.15


def bundle(extra_bytes: int) -> bytes:
    """The handler plus ``extra_bytes`` of incompressible data in 16 files, as a tar.gz."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        files = {"handler.py": HANDLER.encode()}
        for i in range(16):
            files[f"lib/data{i:02}.bin"] = os.urandom(extra_bytes // 16)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


async def calls(url: str, n: int) -> tuple[list[float], list[float]]:
    host, port = url.removeprefix("http://").split(":")
    client = RawClient(host, int(port))
    adhoc = json.dumps({"command": ["python3", "-c", HANDLER],
                        "payload": list(b"hello")}).encode()
    deployed = json.dumps({"payload": list(b"hello")}).encode()

    async def one(path: str, body: bytes) -> float:
        t = time.perf_counter()
        status, data = await client.request("POST", path, body)
        took = (time.perf_counter() - t) * 1000
        if status != 200 or json.loads(data).get("stdout") != "HELLO":
            raise SystemExit(f"bad response from {path}: {status} {data[:300]!r}")
        return took

    for _ in range(5):  # warm up both paths
        await one("/functions/adhoc/invoke", adhoc)
        await one("/functions/bench/invoke", deployed)
    a: list[float] = []
    b: list[float] = []
    for _ in range(n):
        a.append(await one("/functions/adhoc/invoke", adhoc))
        b.append(await one("/functions/bench/invoke", deployed))
    return a, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--bundle-mib", type=float, default=1.0)
    args = parser.parse_args()
    # The sandbox uids must traverse to the bundles: a data folder under /tmp, 0711.
    data = Path(tempfile.mkdtemp(prefix="faas-bench-", dir="/tmp"))
    data.chmod(0o711)
    try:
        env = {"FAAS_EXECUTORS": "sandbox", "FAAS_DATA_DIR": str(data / "data")}
        with gateway(env) as url, httpx.Client(base_url=url, timeout=120) as http:
            archive = bundle(int(args.bundle_mib * 1024 * 1024))
            spec = {"command": ["python3", "/function/handler.py"]}
            t = time.perf_counter()
            r = http.put("/functions/bench", files={"spec": (None, json.dumps(spec)),
                                                    "bundle": ("code.tar.gz", archive)})
            deploy_ms = (time.perf_counter() - t) * 1000
            if r.status_code != 201:
                raise SystemExit(f"deploy failed: {r.status_code} {r.text[:300]}")
            t = time.perf_counter()
            first = http.post("/functions/bench/invoke", json={"payload": list(b"hello")})
            first_ms = (time.perf_counter() - t) * 1000
            if first.json().get("stdout") != "HELLO":
                raise SystemExit(f"first call failed: {first.text[:300]}")
            print(f"deploy of a {len(archive) / 2**20:.2f} MiB bundle (upload, checks, unpack): "
                  f"{deploy_ms:.1f} ms; first call after it: {first_ms:.1f} ms", flush=True)
            a, b = asyncio.run(calls(url, args.n))
        summary("(a) ad hoc call of the handler", a)
        summary("(b) deployed call, code at /function", b)
        ratio = pct(b, 50) / pct(a, 50)
        print(f"ratio (b)/(a) of p50: {ratio:.3f} (target <= {TARGET}: "
              f"{'met' if ratio <= TARGET else 'MISSED'})")
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
