"""The orchestrator hands every executor the server's limits: checked with the fake
executor, so no isolation tier is needed (the output cap in particular is proven here,
not only by the bubblewrap tests)."""

from __future__ import annotations

import asyncio

import pytest

from faas.config import Settings
from faas.executors.fake import FakeExecutor
from faas.models import ExecutionSpec, InvocationResult, InvokeRequest
from faas.orchestrator import Orchestrator

MiB = 1 << 20


async def honours_its_cap(spec: ExecutionSpec) -> InvocationResult:
    """What every executor does with ``Limits.output_bytes``: keep that much, flag the rest."""
    produced = b"x" * (3 * MiB)
    cap = spec.limits.output_bytes
    return InvocationResult(stdout=produced[:cap], stdout_truncated=len(produced) > cap,
                            exit_code=0)


@pytest.mark.parametrize("cap", [1, 4096, 2 * MiB - 1])
async def test_output_cap_setting_reaches_the_executor(cap: int) -> None:
    executor = FakeExecutor(honours_its_cap, name="sandbox")
    orchestrator = Orchestrator(Settings(output_limit_bytes=cap), {"sandbox": executor})
    result = await orchestrator.invoke("f", InvokeRequest(command=["flood"]), "req")
    assert executor.calls[0].limits.output_bytes == cap
    assert len(result.stdout) == cap and result.stdout_truncated


async def test_every_limit_setting_reaches_the_executor() -> None:
    executor = FakeExecutor(name="sandbox")
    settings = Settings(output_limit_bytes=12345, pids_limit=17, tmp_size_mb=9,
                        file_size_mb=7, default_memory_mb=96, max_vcpus=4)
    orchestrator = Orchestrator(settings, {"sandbox": executor})
    request = InvokeRequest(command=["true"], timeout_s=4.5, vcpus=3)
    loop = asyncio.get_running_loop()
    before = loop.time()
    await orchestrator.invoke("f", request, "req")
    limits = executor.calls[0].limits
    assert (limits.output_bytes, limits.pids, limits.tmp_bytes, limits.file_size_bytes,
            limits.memory_bytes, limits.cpu_seconds, limits.vcpus) == (
        12345, 17, 9 * MiB, 7 * MiB, 96 * MiB, 5, 3)
    assert before + 4.5 <= executor.calls[0].deadline <= loop.time() + 4.5
