"""Run one request with the process core and describe the outcome in result terms."""

from __future__ import annotations

import asyncio
import errno

from faas.agent.process import ChildProcess, ProcessOutcome, signal_name
from faas.agent.protocol import AgentReply, AgentRequest

# Exit statuses a shell would report for a command that could not start.
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


def describe_exit(returncode: int | None) -> tuple[int | None, int | None, str | None]:
    """(exit_code, signal, error) from a subprocess-style return code.

    A death by signal N reports ``signal=N`` and ``exit_code=128+N`` as a
    shell would; any non-zero status sets ``error``.
    """
    if returncode is None:
        return None, None, "the process did not report an exit status"
    if returncode < 0:
        sig = -returncode
        return 128 + sig, sig, f"killed by {signal_name(sig)}"
    if returncode:
        return returncode, None, f"exited with status {returncode}"
    return 0, None, None


def describe_oom(limit_bytes: int | None) -> str:
    """The error of a command the kernel's cgroup OOM killer killed, naming the enforced limit."""
    if limit_bytes is None:
        return "out of memory: killed by the kernel OOM killer (no cgroup memory limit)"
    mib = limit_bytes / 2**20
    size = f"{mib:.0f} MiB" if mib == int(mib) else f"{limit_bytes} bytes"
    return f"out of memory: killed by the cgroup memory limit of {size}"


def spawn_error(command: str, exc: OSError) -> tuple[int, str]:
    """(exit_code, error) for a command that could not be started."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return EXIT_NOT_FOUND, f"command not found: {command}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC):
        return EXIT_NOT_EXECUTABLE, f"command not executable: {command} ({exc.strerror})"
    return EXIT_NOT_EXECUTABLE, f"could not start {command}: {exc.strerror or exc}"


def reply_from_outcome(outcome: ProcessOutcome, timeout_s: float) -> AgentReply:
    exit_code, sig, error = describe_exit(outcome.returncode)
    if outcome.timed_out:
        error = f"timed out after {timeout_s:g}s; the process tree was killed"
    return AgentReply(
        stdout=outcome.stdout, stderr=outcome.stderr, exit_code=exit_code, signal=sig,
        error=error, timed_out=outcome.timed_out, stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated, duration_ms=outcome.duration_s * 1000,
    )


async def run_request(
    request: AgentRequest, *, user: int | None = None, group: int | None = None,
    cwd: str | None = None,
) -> AgentReply:
    """Run ``request`` as a child of this process and reply with its result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.timeout_s
    try:
        child = ChildProcess.spawn(request.command, env=request.env, user=user, group=group,
                                   cwd=cwd)
    except OSError as exc:
        code, message = spawn_error(request.command[0], exc)
        return AgentReply(exit_code=code, error=message)
    outcome = await child.communicate(
        request.stdin, output_limit=request.output_limit, deadline=deadline
    )
    return reply_from_outcome(outcome, request.timeout_s)
