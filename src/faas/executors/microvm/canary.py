"""Canary boots: does this VMM + accelerator really run our guest on this host?

A device node proves nothing (here ``/dev/kvm`` is a PVM hypervisor that
cannot run a stock kernel), so a driver boots the real guest once and waits
for the agent's HELLO. The verdict is kept in memory and in a small JSON file
keyed by everything it depends on (VMM binary, kernel, host kernel release,
the KVM device), so ``faas doctor``, the server and the tests pay for it once.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from faas.errors import FaasError
from faas.executors.microvm.config import VMConfig
from faas.executors.microvm.vm import Driver, MicroVM, one_line
from faas.images.common import inputs_hash

_memo: dict[str, CanaryResult] = {}
_locks: dict[str, asyncio.Lock] = {}


@dataclass(frozen=True, slots=True)
class CanaryResult:
    ok: bool
    reason: str
    boot_ms: float = 0.0
    checked_at: float = 0.0


def file_identity(path: Path | str | None) -> str:
    """A cheap fingerprint of a file: path, size and mtime (or 'absent')."""
    if path is None:
        return "none"
    try:
        st = Path(path).stat()
    except OSError:
        return f"{path}:absent"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def canary_key(name: str, *parts: str) -> str:
    kvm = file_identity("/dev/kvm")
    return f"{name}-{inputs_hash([name, os.uname().release, kvm, *parts])}"


async def cached_canary(
    key: str, cache_dir: Path | None, probe: Callable[[], Awaitable[CanaryResult]]
) -> CanaryResult:
    """Return the verdict for ``key``, running ``probe`` only if none is recorded."""
    if key in _memo:
        return _memo[key]
    lock = _locks.setdefault(key, asyncio.Lock())
    async with lock:
        if key in _memo:
            return _memo[key]
        path = cache_dir / "canary" / f"{key}.json" if cache_dir is not None else None
        result = _read(path)
        if result is None:
            result = await probe()
            result = CanaryResult(result.ok, result.reason, result.boot_ms, time.time())
            _write(path, result)
        _memo[key] = result
        return result


def _read(path: Path | None) -> CanaryResult | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
        return CanaryResult(bool(data["ok"]), str(data["reason"]), float(data["boot_ms"]),
                            float(data["checked_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(path: Path | None, result: CanaryResult) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(result)))
    tmp.replace(path)


async def boot_probe(driver: Driver, config: VMConfig, *, timeout_s: float,
                     run_dir: Path | None = None) -> tuple[bool, str, float]:
    """Boot ``config`` with ``driver`` to the agent's HELLO, then destroy it.

    Returns (booted, reason, ms to HELLO); never raises for a failed boot.
    """
    vm = MicroVM(driver, config, run_dir=run_dir)
    try:
        async with asyncio.timeout(timeout_s):
            await vm.spawn()
            await vm.wait_ready()
        return True, f"{driver.name} booted the guest to the agent's HELLO", vm.timings["ready_ms"]
    except TimeoutError:
        tail = one_line(vm.console_tail(600))
        return False, (f"the guest did not reach the agent's HELLO within {timeout_s:g}s"
                       + (f"; VMM/console output: {tail}" if tail else "")), 0.0
    except FaasError as exc:
        return False, str(exc), 0.0
    finally:
        await vm.kill()
