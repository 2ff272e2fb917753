"""``faas.instance.alive``: a server that exited is gone, even before its parent reaps it."""

from __future__ import annotations

import os
import subprocess
import sys

from faas import instance


def test_a_running_process_is_alive_and_an_exited_unreaped_one_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        owner = f"{child.pid}x{instance._start_ticks(child.pid)}"
        assert instance.alive(owner)
        assert child.stdin is not None
        child.stdin.close()
        # Dead but not reaped: a zombie whose /proc entry still shows its start time.
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        assert not instance.alive(owner)
    finally:
        child.wait()
    assert not instance.alive(owner)
    assert instance.alive(instance.instance_id())
