"""Behaviour of the Docker executor against the real daemon (no mocks)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from docker_support import make_spec
from engine_http import Daemon

from faas.errors import ExecutorUnavailable, ImageNotFound, ShuttingDown, ValidationError
from faas.executors.base import Executor
from faas.executors.docker import REQUEST_LABEL, DockerExecutor, availability
from faas.images.docker_image import _split_tag, ensure_docker_image
from faas.images.rootfs import ensure_rootfs_tar

pytestmark = pytest.mark.docker


def containers_for(client: Daemon, request_id: str) -> list[str]:
    return [c.name for c in client.containers(f"{REQUEST_LABEL}={request_id}")]


async def test_is_an_executor(executor: DockerExecutor) -> None:
    assert isinstance(executor, Executor)
    assert executor.name == "docker"


async def test_stdout_and_stderr_are_separate(executor: DockerExecutor) -> None:
    result = await executor.run(make_spec(["sh", "-c", "echo out; echo err >&2"]))
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"
    assert (result.exit_code, result.signal, result.error) == (0, None, None)
    assert result.executor == "docker" and result.request_id == "test"
    assert not result.timed_out and result.duration_ms > 0


async def test_binary_payload_round_trip(executor: DockerExecutor) -> None:
    payload = bytes(range(256)) * 256 + os.urandom(300_000)
    result = await executor.run(make_spec(["cat"], payload=payload))
    assert result.exit_code == 0, result
    assert len(result.stdout) == len(payload)
    assert result.stdout == payload


async def test_empty_payload_gives_eof(executor: DockerExecutor) -> None:
    result = await executor.run(make_spec(["cat"], timeout_s=20))
    assert (result.stdout, result.exit_code, result.timed_out) == (b"", 0, False)


async def test_payload_ignored_by_command_does_not_hang(executor: DockerExecutor) -> None:
    result = await executor.run(make_spec(["true"], payload=b"x" * (4 << 20), timeout_s=20))
    assert result.exit_code == 0 and not result.timed_out


async def test_env_vars(executor: DockerExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAAS_HOST_ONLY_SECRET", "host-secret-value")
    env = {"GREETING": "hello world", "EMPTY": "", "UNICODE": "żółw"}
    result = await executor.run(make_spec(
        ["sh", "-c", 'printf "%s|%s|%s" "$GREETING" "${EMPTY-unset}" "$UNICODE"; echo; env'],
        env=env,
    ))
    first, _, rest = result.stdout.decode().partition("\n")
    assert first == "hello world||żółw"
    assert "host-secret-value" not in rest
    assert "FAAS_HOST_ONLY_SECRET" not in rest


async def test_nonzero_exit_is_a_result_not_an_exception(executor: DockerExecutor) -> None:
    result = await executor.run(make_spec(["sh", "-c", "echo partial; exit 7"]))
    assert result.exit_code == 7
    assert result.signal is None
    assert result.error == "exited with status 7"
    assert result.stdout == b"partial\n"


async def test_death_by_signal_reported_like_a_shell(executor: DockerExecutor) -> None:
    # The container's PID 1 ignores signals it has no handler for, so the
    # victim is a child; its shell parent exits 128+15 as the Engine would.
    result = await executor.run(make_spec(
        ["sh", "-c", "python3 -c 'import os; os.kill(os.getpid(), 15)'; exit $?"]
    ))
    assert (result.exit_code, result.signal) == (143, 15)
    assert result.error is not None and "SIGTERM" in result.error


@pytest.mark.parametrize("command", ["no-such-command", "/no/such/path"])
async def test_command_not_found(executor: DockerExecutor, command: str) -> None:
    result = await executor.run(make_spec([command, "arg"]))
    assert result.exit_code == 127
    assert result.error == f"command not found: {command}"
    assert not result.timed_out


async def test_command_not_executable(executor: DockerExecutor) -> None:
    result = await executor.run(make_spec(["/etc/hostname"]))
    assert result.exit_code == 126, result
    assert result.error is not None and "not executable" in result.error


async def test_timeout_keeps_partial_output_and_removes_container(
    executor: DockerExecutor, docker_daemon: Daemon
) -> None:
    started = time.monotonic()
    result = await executor.run(make_spec(
        ["sh", "-c", "echo started; echo warn >&2; sleep 60"], timeout_s=2.0,
        request_id="timeout-case",
    ))
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.stdout == b"started\n" and result.stderr == b"warn\n"
    assert result.error is not None and "timed out" in result.error
    assert (result.exit_code, result.signal) == (None, None)
    assert elapsed < 10, elapsed
    assert containers_for(docker_daemon, "timeout-case") == []


async def test_deadline_already_passed(executor: DockerExecutor) -> None:
    result = await executor.run(make_spec(["true"], timeout_s=0.0))
    assert result.timed_out


async def test_missing_image_is_a_clear_error_without_pull(executor: DockerExecutor) -> None:
    started = time.monotonic()
    with pytest.raises(ImageNotFound) as info:
        await executor.run(make_spec(["true"], image="faas-no-such-image:v0"))
    assert time.monotonic() - started < 5
    assert "faas-no-such-image:v0" in str(info.value)
    assert info.value.status == 404


@pytest.mark.parametrize("image", ["UPPER:case", "a b", "../x"])
async def test_malformed_image_reference_is_a_validation_error(
    executor: DockerExecutor, image: str
) -> None:
    with pytest.raises(ValidationError, match="not a valid image reference"):
        await executor.run(make_spec(["true"], image=image))


async def test_no_image_at_all_is_a_validation_error(docker_image: str) -> None:
    ex = DockerExecutor()
    try:
        with pytest.raises(ValidationError):
            await ex.run(make_spec(["true"]))
    finally:
        await ex.aclose()


async def test_output_is_capped_and_drained(executor: DockerExecutor) -> None:
    cap = 64 * 1024
    started = time.monotonic()
    result = await executor.run(make_spec(
        ["sh", "-c", "head -c 20000000 /dev/zero; head -c 3000000 /dev/zero >&2; echo done >&2"],
        output_bytes=cap, timeout_s=30,
    ))
    assert result.exit_code == 0 and not result.timed_out, result.error
    assert len(result.stdout) == cap and result.stdout_truncated
    assert len(result.stderr) == cap and result.stderr_truncated
    assert time.monotonic() - started < 20


async def test_output_exactly_at_cap_is_not_truncated(executor: DockerExecutor) -> None:
    result = await executor.run(make_spec(["head", "-c", "4096", "/dev/zero"], output_bytes=4096))
    assert len(result.stdout) == 4096 and not result.stdout_truncated


async def test_cancellation_removes_container(
    executor: DockerExecutor, docker_daemon: Daemon
) -> None:
    task = asyncio.create_task(executor.run(make_spec(["sleep", "60"], request_id="cancel-case")))
    await asyncio.sleep(1.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert containers_for(docker_daemon, "cancel-case") == []


async def test_cancellation_during_create_removes_container(
    executor: DockerExecutor, docker_daemon: Daemon
) -> None:
    for delay in (0.0, 0.005, 0.02, 0.05):
        task = asyncio.create_task(
            executor.run(make_spec(["sleep", "60"], request_id="early-cancel"))
        )
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # A create the daemon was still doing is undone in the background; aclose() waits.
    await executor.aclose()
    assert containers_for(docker_daemon, "early-cancel") == []


async def test_concurrent_invocations_are_isolated(executor: DockerExecutor) -> None:
    specs = [make_spec(["sh", "-c", f"echo {i} > /tmp/mine; sleep 0.3; cat /tmp/mine"])
             for i in range(4)]
    results = await asyncio.gather(*(executor.run(s) for s in specs))
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(4)]


async def test_aclose_is_idempotent_and_final(docker_image: str) -> None:
    ex = DockerExecutor(default_image=docker_image)
    assert (await ex.run(make_spec(["true"]))).exit_code == 0
    await ex.aclose()
    await ex.aclose()
    with pytest.raises(ShuttingDown):
        await ex.run(make_spec(["true"]))


async def test_aclose_destroys_running_containers(
    docker_image: str, docker_daemon: Daemon
) -> None:
    ex = DockerExecutor(default_image=docker_image)
    task = asyncio.create_task(ex.run(make_spec(["sleep", "60"], request_id="aclose-case")))
    await asyncio.sleep(1.5)
    await ex.aclose()
    # The run sees its container vanish; it ends promptly either way.
    async with asyncio.timeout(15):
        await asyncio.gather(task, return_exceptions=True)
    assert containers_for(docker_daemon, "aclose-case") == []


async def test_unknown_runtime_is_reported(docker_image: str) -> None:
    ex = DockerExecutor(default_image=docker_image, runtime="faas-no-such-runtime")
    try:
        with pytest.raises(ExecutorUnavailable, match="faas-no-such-runtime"):
            await ex.run(make_spec(["true"]))
    finally:
        await ex.aclose()


async def test_init_option_runs(docker_image: str) -> None:
    ex = DockerExecutor(default_image=docker_image, init=True)
    try:
        result = await ex.run(make_spec(["sh", "-c", "echo $$"]))
    finally:
        await ex.aclose()
    assert result.exit_code == 0 and result.stdout != b"1\n"


async def test_availability(docker_daemon: Daemon) -> None:
    ok = await availability()
    assert ok.usable, ok.reason
    assert "Docker Engine" in ok.reason
    missing = await availability("unix:///nonexistent/docker.sock")
    assert not missing.usable and "/nonexistent/docker.sock" in missing.reason
    runtime = await availability(runtime="faas-no-such-runtime")
    assert not runtime.usable and "faas-no-such-runtime" in runtime.reason


async def test_unreachable_daemon_raises_executor_unavailable() -> None:
    ex = DockerExecutor(base_url="unix:///nonexistent/docker.sock", default_image="x")
    try:
        with pytest.raises(ExecutorUnavailable, match="unreachable"):
            await ex.run(make_spec(["true"]))
    finally:
        await ex.aclose()


def test_image_import_is_idempotent(docker_image: str, docker_daemon: Daemon) -> None:
    first = docker_daemon.image(docker_image)["Id"]
    started = time.monotonic()
    again = ensure_docker_image(ensure_rootfs_tar(), docker_image)
    assert again == first
    assert time.monotonic() - started < 10


def test_split_tag() -> None:
    assert _split_tag("faas-rootfs:latest") == ("faas-rootfs", "latest")
    assert _split_tag("faas-rootfs") == ("faas-rootfs", "latest")
    assert _split_tag("localhost:5000/x") == ("localhost:5000/x", "latest")
    assert _split_tag("localhost:5000/x:v1") == ("localhost:5000/x", "v1")
