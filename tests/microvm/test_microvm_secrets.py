"""A call's secrets in microVMs: sent with the REQUEST, files at /run/secrets in the guest.

Cold VMs and pooled (snapshot-restored) ones alike: the values travel per call
to the agent, which writes them into a read-only tmpfs of 0400 files owned by
the commands' user; never on the kernel command line, never in the VMM's
arguments or environment. An agent whose HELLO lacks the feature never gets them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from microvm_support import assert_no_vm_leaks, make_spec, vmm_pids

from faas.errors import ExecutorUnavailable
from faas.executors.microvm import MicroVMSettings, QemuExecutor
from faas.executors.microvm.config import VMConfig
from faas.executors.microvm.vm import MicroVM, VMState
from faas.images.manifest import GuestImages
from faas.models import ExecutionSpec
from faas.protocol import AgentReply, AgentRequest
from secrets_support import INSIDE, SECRETS, check_inside, host_processes_holding

pytestmark = pytest.mark.microvm


def with_secrets(spec: ExecutionSpec) -> ExecutionSpec:
    return dataclasses.replace(spec, secrets=SECRETS)


@pytest.fixture
async def pooled(settings: MicroVMSettings, images: GuestImages,
                 run_dir: Path) -> AsyncIterator[QemuExecutor]:
    executor = QemuExecutor(dataclasses.replace(settings, pool_min=1, pool_max=1,
                                                snapshots=True), images)
    yield executor
    await executor.aclose()
    assert_no_vm_leaks(run_dir)


async def test_cold_vm_shows_secrets_as_read_only_files_of_the_commands_user(
        qemu: QemuExecutor, run_dir: Path) -> None:
    result = await qemu.run(with_secrets(make_spec(
        ["sh", "-c", INSIDE + "grep -c -e db- -e key- /proc/cmdline || true"])))
    check_inside(dataclasses.replace(result, stdout=result.stdout.rsplit(b"\n", 2)[0] + b"\n"))
    lines = result.stdout.decode().splitlines()
    assert lines[2] == "65534" and lines[-1] == "0", lines  # nobody; not on the kernel's line
    assert_no_vm_leaks(run_dir)


async def test_pooled_restored_vms_get_each_calls_own_secrets(pooled: QemuExecutor) -> None:
    kinds = []
    for _ in range(2):
        result = await pooled.run(with_secrets(make_spec(["sh", "-c", INSIDE])))
        check_inside(result)
        kinds.append(result.start_kind)
    assert "cold" not in kinds[1:], kinds
    plain = await pooled.run(make_spec(["sh", "-c", "grep -c secrets /proc/self/mounts"]))
    assert plain.stdout == b"0\n", plain


async def test_no_host_process_nor_the_vmm_shows_a_secret_while_the_call_runs(
        qemu: QemuExecutor, run_dir: Path) -> None:
    call = asyncio.create_task(qemu.run(with_secrets(make_spec(
        ["sh", "-c", "cat /run/secrets/db; sleep 4"]))))
    until = time.monotonic() + 60
    while not any(vm.state is VMState.DONE for vm in qemu._live):  # the request is sent
        assert time.monotonic() < until and not call.done(), "the request was never sent"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    try:
        pids = vmm_pids(run_dir)
        assert pids, "no VMM found"
        for pid in pids:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert b"-append" in argv or b"--config-file" in argv or b"-kernel" in argv
        for secret in SECRETS:
            assert host_processes_holding(secret.value) == []
    finally:
        result = await call
    assert result.stdout == SECRETS[0].value, result
    assert_no_vm_leaks(run_dir)


async def test_secrets_are_never_sent_to_an_agent_without_the_feature(
        qemu: QemuExecutor, monkeypatch: pytest.MonkeyPatch, run_dir: Path) -> None:
    """An image built before agent 4 (HELLO without "secrets"): refused, never run bare."""
    acquire = qemu._acquire
    sent: list[AgentRequest] = []

    async def old_agent(config: VMConfig, deadline: float, *,
                        pooled: bool = True) -> tuple[MicroVM, str]:
        vm, kind = await acquire(config, deadline, pooled=pooled)
        vm.hello = {"agent": "3", "features": ["ping", "function"]}
        run = vm.run

        async def recorded(request: AgentRequest) -> AgentReply:
            sent.append(request)
            return await run(request)

        monkeypatch.setattr(vm, "run", recorded)
        return vm, kind

    monkeypatch.setattr(qemu, "_acquire", old_agent)
    with pytest.raises(ExecutorUnavailable, match=r"agent \(version 3\) cannot show secrets "
                       r"at /run/secrets; rebuild the guest image"):
        await qemu.run(with_secrets(make_spec(["cat", "/run/secrets/db"])))
    assert sent == []
    assert_no_vm_leaks(run_dir)
