"""What a finished child did, and the one table of messages every tier reports it with.

Results say the same thing the same way whatever ran the command (the guest
agent, the namespace sandbox, a container, a VM): a tier only chooses what it
destroyed on a timeout ("the sandbox", "the container", ...).
"""

from __future__ import annotations

import errno
import signal
from dataclasses import dataclass

#: Exit statuses a shell reports for a command that could not start.
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
_MAX_SIGNAL = 64


@dataclass(slots=True)
class ProcessOutcome:
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    returncode: int | None  # negative: killed by that signal (subprocess convention)
    timed_out: bool
    duration_s: float


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_exit(returncode: int | None, *, shell_status: bool = False
                  ) -> tuple[int | None, int | None, str | None]:
    """(exit_code, signal, error) from a subprocess-style return code.

    A death by signal N reports ``signal=N`` and ``exit_code=128+N`` as a
    shell would; any non-zero status sets ``error``. ``shell_status``: the
    status came from a pid 1 that reports a child killed by signal N as
    128+N itself (bubblewrap's init, the Docker Engine), so such a status is
    read as that signal.
    """
    if returncode is None:
        return None, None, "the process did not report an exit status"
    if shell_status and 128 < returncode <= 128 + _MAX_SIGNAL:
        returncode = -(returncode - 128)
    if returncode < 0:
        sig = -returncode
        return 128 + sig, sig, f"killed by {signal_name(sig)}"
    if returncode:
        return returncode, None, f"exited with status {returncode}"
    return 0, None, None


def describe_oom(limit_bytes: int | None) -> str:
    """The error of a command the kernel's OOM killer killed, naming the enforced limit."""
    if limit_bytes is None:
        return "out of memory: killed by the kernel OOM killer (no cgroup memory limit)"
    mib = limit_bytes / 2**20
    size = f"{mib:.0f} MiB" if mib == int(mib) else f"{limit_bytes} bytes"
    return f"out of memory: killed by the cgroup memory limit of {size}"


def describe_timeout(destroyed: str, after_s: float | None = None) -> str:
    """The error of a command stopped at its deadline; ``destroyed`` names what was killed."""
    after = f" after {after_s:.3g}s" if after_s is not None else ""
    return f"timed out{after}; {destroyed} was killed"


def not_found(command: str) -> str:
    return f"command not found: {command}"


def not_executable(command: str, reason: str) -> str:
    return f"command not executable: {command} ({reason})"


def spawn_error(command: str, exc: OSError) -> tuple[int, str]:
    """(exit_code, error) for a command that could not be started."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return EXIT_NOT_FOUND, not_found(command)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC):
        return EXIT_NOT_EXECUTABLE, not_executable(command, exc.strerror or str(exc))
    return EXIT_NOT_EXECUTABLE, f"could not start {command}: {exc.strerror or exc}"
