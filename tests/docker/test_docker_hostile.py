"""Hostile callers against the Docker executor (issue 8): the platform must answer every time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

HERE = Path(__file__).resolve().parent

# Run in a child whose SIGPIPE has its default action (as a CLI may leave it): a
# write that meets the closed stream must not kill the process.
UNREAD_STDIN = """
import asyncio, signal, sys
sys.path.insert(0, sys.argv[2])
from docker_support import make_spec
from faas.executors.docker import DockerExecutor

async def main() -> None:
    ex = DockerExecutor(default_image=sys.argv[1])
    try:
        for round_ in range(10):
            for size in (0, 70_000, 6 << 20):
                for command in (["head", "-c", "1"], ["true"]):
                    r = await ex.run(make_spec(command, payload=b"x" * size, timeout_s=60))
                    want = b"x" if command[0] == "head" and size else b""
                    ok = (r.exit_code, r.error, r.timed_out, r.stdout) == (0, None, False, want)
                    assert ok, (round_, size, command, r)
        print("all ordinary results")
    finally:
        await ex.aclose()

signal.signal(signal.SIGPIPE, signal.SIG_DFL)
asyncio.run(main())
"""


def test_unread_stdin_is_dropped_every_time(docker_image: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", UNREAD_STDIN, docker_image, str(HERE)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() == "all ordinary results"
