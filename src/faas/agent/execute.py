"""Run one request with the process core and describe the outcome in result terms."""

from __future__ import annotations

import asyncio

from faas.proc.child import ChildProcess
from faas.proc.outcome import ProcessOutcome, describe_exit, describe_timeout, spawn_error
from faas.protocol import AgentReply, AgentRequest


def reply_from_outcome(outcome: ProcessOutcome, timeout_s: float) -> AgentReply:
    exit_code, sig, error = describe_exit(outcome.returncode)
    if outcome.timed_out:
        error = describe_timeout("the process tree", timeout_s)
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
