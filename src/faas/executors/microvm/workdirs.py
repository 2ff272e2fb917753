"""VM work folders left by servers that are gone: found by owner, their VMMs killed, removed.

A VM's work folder is named ``faas-vm-<instance id>-<random>`` after the
server that made it (``faas.instance``) and records its VMM's pid and start
time in ``vmm.pid``; this module is the crash sweep over such folders.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from faas import instance


def start_time(pid: int) -> str:
    """A live process's start time in clock ticks (field 22 of /proc/PID/stat);
    '' when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "" if fields[0] in ("Z", "X") else fields[19]


def sweep_stale_workdirs(run_dir: Path | None = None, *, min_age_s: float = 60.0) -> list[Path]:
    """Remove VM work folders (and kill their VMMs) left by servers that are gone.

    A folder named ``faas-vm-<owner>-*`` belongs to the server instance
    ``owner`` (see ``faas.instance``): it is swept only when that instance no
    longer runs, never while it does (two servers may share a run folder).
    Its VMM, named with its start time in ``vmm.pid``, is SIGKILLed first if
    it is still the same process and its command line names the folder (a
    VMM outlives its server when PR_SET_PDEATHSIG did not fire, e.g. its
    spawning thread had exited); its channel socket, console log and disk
    overlays go with the folder. Folders without an owner id (older servers)
    are stale when the process in ``vmm.pid`` is gone, or, without one, when
    older than ``min_age_s``. Returns what was removed.
    """
    base = run_dir if run_dir is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(base.glob("faas-vm-*"))
    except OSError:
        return removed
    for workdir in entries:
        owner = workdir_owner(workdir.name)
        try:
            if owner is not None:
                stale = not instance.alive(owner)
            else:
                stale = _stale_without_owner(workdir, min_age_s)
        except (OSError, ValueError):
            continue
        if stale and workdir.is_dir():
            _kill_leftover_vmm(workdir)
            shutil.rmtree(workdir, ignore_errors=True)
            removed.append(workdir)
    return removed


def workdir_owner(name: str) -> str | None:
    """The instance id in a work folder name ``faas-vm-<owner>-<random>``, or None
    (a folder of an older server, whose random part could look like an id)."""
    owner = name.removeprefix("faas-vm-").split("-", 1)[0]
    return owner if name.startswith("faas-vm-") and instance.parse(owner) else None


def _stale_without_owner(workdir: Path, min_age_s: float) -> bool:
    try:
        pid_text = (workdir / "vmm.pid").read_text().split()
    except OSError:
        pid_text = []
    if pid_text:
        return start_time(int(pid_text[0])) != (pid_text[1] if len(pid_text) > 1 else "")
    return time.time() - workdir.stat().st_mtime > min_age_s


def _kill_leftover_vmm(workdir: Path, wait_s: float = 2.0) -> None:
    """SIGKILL the VMM recorded in ``workdir/vmm.pid`` if it still runs; wait for it to die.

    Only the very process recorded (same pid and start time) and only if its
    command line mentions ``workdir``: a reused pid is never killed.
    """
    try:
        pid_text = (workdir / "vmm.pid").read_text().split()
        pid, started = int(pid_text[0]), pid_text[1]
    except (OSError, ValueError, IndexError):
        return
    if start_time(pid) != started:
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if str(workdir).encode() not in cmdline:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while start_time(pid) == started and time.monotonic() < deadline:
        time.sleep(0.01)
