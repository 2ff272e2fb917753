"""The microVM tier through real HTTP: a gateway process, QEMU VMs behind it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from microvm_support import assert_no_vm_leaks

from bundle_support import tar_gz
from faas.images.manifest import Manifest
from helpers import Server, running_server
from secrets_e2e import check_a_secret_end_to_end

pytestmark = pytest.mark.microvm


@pytest.fixture(scope="module")
def server(image_manifest: Manifest, run_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real `faas serve` offering the microVM tier (and its VMs' folders in run_dir)."""
    env = {"FAAS_EXECUTORS": "sandbox,microvm,qemu,firecracker",
           "FAAS_DEFAULT_EXECUTOR": "microvm", "FAAS_VM_RUN_DIR": str(run_dir)}
    with running_server(tmp_path_factory.mktemp("microvm-gateway"), env) as server:
        yield server
    assert server.proc.returncode == 0, server.log()
    assert_no_vm_leaks(run_dir)


@pytest.fixture(scope="module")
def gateway(server: Server) -> str:
    return server.url


def invoke(url: str, timeout: float = 90, **body: object) -> httpx.Response:
    return httpx.post(f"{url}/functions/microvm-e2e/invoke", json=body, timeout=timeout)


@pytest.mark.parametrize("executor", ["microvm", "qemu"])
def test_invoke_in_a_microvm(gateway: str, executor: str) -> None:
    r = invoke(gateway, command=["/bin/sh", "-c", "cat; echo; echo $GREETING; uname -r; exit 3"],
               env_vars=["GREETING=hello from the VM"], payload=list(b"payload"),
               executor=executor)
    assert r.status_code == 200, r.text
    body = r.json()
    lines = body["stdout"].split("\n")
    assert lines[:2] == ["payload", "hello from the VM"]
    assert lines[2].endswith("cloud-amd64")  # the guest's kernel, not the host's
    assert body["exit_code"] == 3 and body["error"] == "exited with status 3"
    assert body["executor"] == executor and body["microvm"]["driver"] == "qemu"


def test_binary_output_round_trips(gateway: str) -> None:
    data = bytes(range(256)) * 8
    r = invoke(gateway, command=["cat"], payload=base64.b64encode(data).decode(),
               output_encoding="base64", executor="microvm")
    assert r.status_code == 200
    assert base64.b64decode(r.json()["stdout_base64"]) == data


def test_command_not_found_over_http(gateway: str) -> None:
    r = invoke(gateway, command=["does-not-exist"], executor="qemu")
    assert r.status_code == 200
    assert r.json()["exit_code"] == 127 and "command not found" in r.json()["error"]


def test_timeout_over_http_is_504_with_partial_output(gateway: str) -> None:
    started = time.monotonic()
    r = invoke(gateway, command=["/bin/sh", "-c", "echo partial; sleep 600"], timeout_s=10,
               executor="qemu")
    assert r.status_code == 504, r.text
    assert time.monotonic() - started < 12
    body = r.json()
    assert body["timed_out"] is True and body["stdout"] == "partial\n"


def test_firecracker_where_it_cannot_boot_is_a_clear_503(gateway: str) -> None:
    import asyncio

    from faas.executors.microvm import firecracker_availability

    verdict = asyncio.run(firecracker_availability())
    if verdict.usable:
        pytest.skip("Firecracker works on this host")
    started = time.monotonic()
    r = invoke(gateway, command=["true"], executor="firecracker", timeout=30)
    assert r.status_code == 503, r.text
    assert "firecracker" in r.json()["error"].lower()
    assert time.monotonic() - started < 15  # at most one canary boot, never a hang


def test_pooled_invocations_over_http_are_warm_fresh_and_counted(gateway: str) -> None:
    """The gateway's executors keep pools (env defaults): the first invocation of a
    class makes its pool; once a VM waits in it, the next invocation is warm, and
    still finds a /tmp nobody wrote to."""
    script = "ls -A /tmp; echo secret > /tmp/left-behind"
    first = invoke(gateway, command=["/bin/sh", "-c", script], executor="qemu")
    assert first.status_code == 200 and first.json()["stdout"] == "lost+found\n", first.text
    deadline = time.monotonic() + 60
    while True:
        metrics = httpx.get(f"{gateway}/metrics", timeout=10).text
        ready = [line for line in metrics.splitlines()
                 if line.startswith('faas_pool_ready{executor="qemu"')]
        if ready and float(ready[0].split()[-1]) >= 1:
            break
        assert time.monotonic() < deadline, metrics
        time.sleep(0.2)
    second = invoke(gateway, command=["/bin/sh", "-c", script], executor="qemu")
    body = second.json()
    assert second.status_code == 200 and body["stdout"] == "lost+found\n", second.text
    assert body["start"]["kind"] == "warm" and body["start"]["start_ms"] < 1000
    metrics = httpx.get(f"{gateway}/metrics", timeout=10).text
    assert 'faas_sandbox_starts_total{executor="qemu",kind="warm"}' in metrics


def test_hostile_requests_leave_the_gateway_serving(gateway: str) -> None:
    """Issue 8 on this tier: unread 6 MiB stdin, a huge env, the host's kernel command line."""
    big = base64.b64encode(bytes(6 * 1024 * 1024)).decode()
    for command in (["true"], ["head", "-c", "1"]):
        r = invoke(gateway, command=command, payload=big, executor="qemu")
        assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text[:500]
    r = invoke(gateway, command=["true"], env_vars=[f"V{i}=x" for i in range(300_000)],
               executor="qemu")
    assert r.status_code == 400 and "env_vars" in r.json()["error"], r.text[:300]
    r = invoke(gateway, command=["cat", "/proc/cmdline"], executor="qemu")
    host_cmdline = Path("/proc/cmdline").read_text().strip()
    assert r.status_code == 200 and host_cmdline not in r.json()["stdout"], r.text
    assert httpx.get(f"{gateway}/healthz", timeout=10).status_code == 200


def test_a_deployed_python_handler_answers_in_a_microvm(gateway: str) -> None:
    """Deploy code over HTTP, call it: the bundle travels with the call into the VM's
    read-only /function (a pooled VM did not know its function when it booted)."""
    handler = b"import sys\nsys.stdout.write(sys.stdin.read().upper())\n"
    spec = {"command": ["python3", "/function/handler.py"], "executor": "qemu"}
    put = httpx.put(f"{gateway}/functions/vm-deployed", timeout=60, files={
        "spec": (None, json.dumps(spec)),
        "bundle": ("code.tar.gz", tar_gz({"handler.py": handler}))})
    assert put.status_code == 201, put.text
    r = httpx.post(f"{gateway}/functions/vm-deployed/invoke", timeout=120,
                   json={"payload": list(b"from the vm")})
    assert r.status_code == 200 and r.json()["stdout"] == "FROM THE VM", r.text
    assert r.json()["executor"] == "qemu"


def test_a_secret_reaches_the_vm_and_nowhere_else(server: Server) -> None:
    check_a_secret_end_to_end(server.url, server.log_path, "qemu")
