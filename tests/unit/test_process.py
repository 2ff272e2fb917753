"""The process core: caps that never block a flooding child, hard deadlines, reaping."""

import asyncio
import os
import sys
from pathlib import Path

from faas.agent.execute import run_request
from faas.proc.child import ChildProcess
from faas.proc.outcome import describe_exit
from faas.protocol import AgentRequest


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_flood_is_capped_and_the_child_finishes() -> None:
    loop = asyncio.get_running_loop()
    child = ChildProcess.spawn(py("import sys\nfor _ in range(1600): "
                                  "sys.stdout.write('x' * 65536)\nprint('done', file=sys.stderr)"),
                               env={})
    out = await child.communicate(b"", output_limit=1000, deadline=loop.time() + 30)
    assert out.returncode == 0 and not out.timed_out
    assert len(out.stdout) == 1000 and out.stdout_truncated
    assert out.stderr == b"done\n" and not out.stderr_truncated


async def test_deadline_kills_and_keeps_partial_output() -> None:
    loop = asyncio.get_running_loop()
    child = ChildProcess.spawn(py("import time\nprint('early', flush=True)\ntime.sleep(60)"),
                               env={})
    out = await child.communicate(b"", output_limit=100, deadline=loop.time() + 0.5)
    assert out.timed_out and out.stdout == b"early\n" and out.returncode == -9
    assert out.duration_s < 5


async def test_child_that_ignores_stdin_does_not_hang_the_writer() -> None:
    loop = asyncio.get_running_loop()
    child = ChildProcess.spawn(["true"], env={"PATH": os.environ["PATH"]})
    out = await child.communicate(b"x" * (8 << 20), output_limit=100, deadline=loop.time() + 10)
    assert out.returncode == 0 and not out.timed_out


async def test_cancellation_kills_and_reaps() -> None:
    loop = asyncio.get_running_loop()
    child = ChildProcess.spawn(["sleep", "60"], env={"PATH": os.environ["PATH"]})
    task = asyncio.ensure_future(child.communicate(b"", output_limit=10,
                                                   deadline=loop.time() + 60))
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for _ in range(100):
        if child.returncode is not None:
            break
        await asyncio.sleep(0.02)
    assert child.returncode == -9
    assert not Path(f"/proc/{child.pid}").exists()


async def test_background_child_holding_the_pipe_does_not_hang() -> None:
    reply = await run_request(AgentRequest(["sh", "-c", "sleep 30 & echo hi"],
                                           {"PATH": os.environ["PATH"]}, timeout_s=20))
    assert reply.stdout == b"hi\n" and reply.exit_code == 0 and reply.duration_ms < 5000


def test_describe_exit() -> None:
    assert describe_exit(0) == (0, None, None)
    assert describe_exit(2) == (2, None, "exited with status 2")
    assert describe_exit(-9) == (137, 9, "killed by SIGKILL")


_STDIN_NEVER_READ = r"""
import asyncio, os, signal, sys
from faas.proc.child import ChildProcess

signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as a CLI that restores it has it


async def main() -> None:
    loop = asyncio.get_running_loop()
    env = {"PATH": os.environ["PATH"]}
    for _ in range(3):
        for argv in (["true"], ["head", "-c", "1"]):
            for size in (0, 70 * 1024, 6 << 20):
                child = ChildProcess.spawn(argv, env=env)
                out = await child.communicate(b"x" * size, output_limit=100,
                                              deadline=loop.time() + 20)
                assert out.returncode == 0 and not out.timed_out, (argv, size, out)
                assert out.stdout == (b"x" if argv[0] == "head" and size else b"")
    print("ok")

asyncio.run(main())
"""


def test_unread_stdin_never_kills_the_caller_even_with_default_sigpipe() -> None:
    """A command that exits without reading its stdin: the rest of stdin is dropped,
    and the caller survives even where SIGPIPE has its default action (the server
    process of the sandbox tier runs this core in-process)."""
    import subprocess

    src = str(Path(__file__).resolve().parents[2] / "src")
    done = subprocess.run([sys.executable, "-c", _STDIN_NEVER_READ], capture_output=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": src})
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout == b"ok\n"
