"""The namespace-sandbox executor (bubblewrap): the default tier, no daemon, no KVM.

Each invocation gets a fresh sandbox:

* new user, pid, ipc, uts, mount, net and cgroup namespaces (``--unshare-all``):
  no network at all, not even loopback to the gateway; further user
  namespaces disabled;
* a read-only root holding only the host's ``/usr`` (or a configured rootfs
  tree) and a few files from ``/etc``; a private size-capped tmpfs ``/tmp``;
  fresh ``/proc`` and a minimal ``/dev``;
* the command runs as uid 1000 inside, mapped to a host uid of its own
  (``sandbox_uid_base + slot``) that owns nothing on the host, so per-user
  rlimits count this sandbox alone and no host file is readable through
  ownership;
* all capabilities dropped, ``no_new_privs`` (bubblewrap always sets it), the
  seccomp filter of ``faas.executors.seccomp``;
* an environment of exactly the request's ``env_vars`` over a minimal
  PATH/HOME/LANG;
* limits: memory and pids through a cgroup (v1 or v2), and rlimits as the floor
  (CPU seconds, file size, open files, processes, no core dumps).

Start sequence, race-free: bubblewrap is spawned with ``--info-fd`` and
``--block-fd``; it reports the sandbox's pid-1 and then waits. The executor
moves that pid into the cgroup and applies the rlimits (``prlimit``), and only
then releases it to execute the command, so nothing the command forks can
escape the limits.

Teardown: the deadline kills the cgroup's processes and bubblewrap; the
sandbox's pid-1 dies with it (``--die-with-parent``), and a dying pid-1 takes
every process of its pid namespace along, including children that ignore
SIGTERM or double-forked out of the process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import resource
import secrets
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

from faas.agent.execute import describe_exit
from faas.agent.process import ChildProcess, ProcessOutcome
from faas.errors import ExecutorUnavailable, SandboxError
from faas.executors import seccomp
from faas.executors.base import Availability
from faas.executors.cgroups import Cgroup, Cgroups
from faas.models import ExecutionSpec, InvocationResult

SANDBOX_UID = 1000
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
            "USER": "sandbox"}
_ETC_FILES = ("/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime", "/etc/mime.types")
_EXEC_FAILED = b"bwrap: execvp "
_CAP_SYS_RESOURCE = 24
_PR_SET_CHILD_SUBREAPER = 36
_PRLIMIT_FLAGS = {resource.RLIMIT_CPU: "cpu", resource.RLIMIT_FSIZE: "fsize",
                  resource.RLIMIT_NOFILE: "nofile", resource.RLIMIT_NPROC: "nproc",
                  resource.RLIMIT_CORE: "core", resource.RLIMIT_AS: "as"}


def has_capability(cap: int) -> bool:
    """Whether this process holds ``cap`` in its effective set."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    return False


class _SandboxInit:
    """The sandbox's pid-1, held by pidfd so it can be awaited and reaped precisely.

    bubblewrap's outer process exits as soon as the command's status is
    known, sometimes before its pid-1 has finished tearing the namespace
    down. That pid-1 is then re-parented to us (we are a child subreaper) and
    reaped here, by pidfd, so no zombie piles up even where the host's pid 1
    does not reap (e.g. the gateway itself is pid 1 of a container).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd = os.pidfd_open(pid)

    async def reap(self, timeout_s: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(self.fd, lambda: exited.done() or exited.set_result(None))
        try:
            async with asyncio.timeout(timeout_s):
                await exited
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.fd, signal.SIGKILL)
        finally:
            loop.remove_reader(self.fd)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitid(os.P_PIDFD, self.fd, os.WEXITED | os.WNOHANG)
        os.close(self.fd)


def become_subreaper() -> bool:
    """Adopt orphaned descendants (PR_SET_CHILD_SUBREAPER); False if the kernel refuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


class UidPool:
    """Host uids for concurrent sandboxes: one per running invocation, never shared."""

    def __init__(self, base: int, size: int) -> None:
        self._free = list(range(base + size - 1, base - 1, -1))

    @contextlib.contextmanager
    def lease(self) -> Iterator[int]:
        if not self._free:
            raise SandboxError("no free sandbox uid (more invocations than the uid pool)")
        uid = self._free.pop()
        try:
            yield uid
        finally:
            self._free.append(uid)


def bwrap_argv(bwrap: str, *, tmp_bytes: int, rootfs: Path | None) -> list[str]:
    """The invocation-independent part of the bubblewrap command line."""
    argv = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--cap-drop", "ALL", "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID), "--hostname", "sandbox"]
    if rootfs is not None:
        argv += ["--ro-bind", str(rootfs), "/"]
    else:
        argv += ["--ro-bind", "/usr", "/usr"]
        for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
            target = Path("/") / name
            if target.is_symlink():
                argv += ["--symlink", str(target.readlink()), f"/{name}"]
            elif target.is_dir():
                argv += ["--ro-bind", str(target), f"/{name}"]
        for path in _ETC_FILES:
            argv += ["--ro-bind-try", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp",
             "--remount-ro", "/", "--chdir", "/tmp"]
    return argv


async def _read_info(fd: int, deadline: float) -> dict[str, object] | None:
    """Read bubblewrap's --info-fd JSON; None if it closed the fd without writing."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    done: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        data.extend(chunk)
        if (not chunk or data.rstrip().endswith(b"}")) and not done.done():
            done.set_result(None)

    os.set_blocking(fd, False)
    loop.add_reader(fd, on_readable)
    try:
        async with asyncio.timeout_at(deadline):
            await done
    finally:
        loop.remove_reader(fd)
    if not data.strip():
        return None
    try:
        info = json.loads(data)
    except ValueError as exc:
        raise SandboxError(f"bubblewrap wrote unreadable info: {data[:200]!r}") from exc
    if not isinstance(info, dict):
        raise SandboxError("bubblewrap info is not a JSON object")
    return info


class SandboxExecutor:
    """Runs each invocation in a fresh bubblewrap sandbox."""

    name = "sandbox"

    def __init__(
        self,
        *,
        bwrap: str | None = None,
        cgroup_root: str = "faas",
        uid_base: int = 200000,
        max_sandboxes: int = 64,
        rootfs: Path | None = None,
        require_cgroups: bool = False,
    ) -> None:
        found = bwrap or shutil.which("bwrap")
        if found is None:
            raise ExecutorUnavailable("bubblewrap (bwrap) is not installed")
        ok, why = seccomp.supported()
        if not ok:
            raise ExecutorUnavailable(why)
        self._bwrap = found
        self._rootfs = rootfs
        self._filter = seccomp.build_filter()
        self._uids = UidPool(uid_base, max_sandboxes)
        self.cgroups = Cgroups(cgroup_root)
        if require_cgroups and not self.cgroups.available:
            raise ExecutorUnavailable(self.cgroups.reason)
        self._static_argv: dict[int, list[str]] = {}
        become_subreaper()
        # Setting another uid's rlimits needs CAP_SYS_RESOURCE; without it
        # (as in many containers) the limits are set by exec'ing through
        # util-linux prlimit, which lowers its own and then runs bubblewrap.
        self._prlimit_wrapper: str | None = None
        if not has_capability(_CAP_SYS_RESOURCE):
            self._prlimit_wrapper = shutil.which("prlimit")
            if self._prlimit_wrapper is None:
                raise ExecutorUnavailable(
                    "no CAP_SYS_RESOURCE and no prlimit(1) to set the sandbox's rlimits"
                )
        self._children: set[ChildProcess] = set()
        self._closed = False

    def argv_for(self, tmp_bytes: int) -> list[str]:
        argv = self._static_argv.get(tmp_bytes)
        if argv is None:
            argv = bwrap_argv(self._bwrap, tmp_bytes=tmp_bytes, rootfs=self._rootfs)
            self._static_argv[tmp_bytes] = argv
        return argv

    def seccomp_fd(self) -> int:
        """A pipe's read end holding the filter program (read once by bubblewrap)."""
        r, w = os.pipe()
        try:
            os.write(w, self._filter)
        finally:
            os.close(w)
        return r

    async def run(self, spec: ExecutionSpec) -> InvocationResult:
        if self._closed:
            raise SandboxError("executor is closed")
        limits = spec.limits
        env = {**BASE_ENV, **spec.env}
        group: Cgroup | None = None
        fds: list[int] = []
        child: ChildProcess | None = None
        sandbox_init: _SandboxInit | None = None
        with self._uids.lease() as host_uid:
            try:
                if self.cgroups.available:
                    group = self.cgroups.create(
                        f"{spec.request_id[:40]}-{secrets.token_hex(4)}",
                        memory_bytes=limits.memory_bytes, pids=limits.pids,
                    )
                seccomp_r = self.seccomp_fd()
                fds.append(seccomp_r)
                info_r, info_w = os.pipe()
                block_r, block_w = os.pipe()
                fds += [info_r, info_w, block_r, block_w]
                wrapper = self._prlimit_argv(spec) if self._prlimit_wrapper else []
                argv = [*wrapper, *self.argv_for(limits.tmp_bytes), "--seccomp", str(seccomp_r),
                        "--info-fd", str(info_w), "--block-fd", str(block_r),
                        "--", *spec.command]
                try:
                    child = ChildProcess.spawn(argv, env=env, user=host_uid, group=host_uid,
                                               pass_fds=(seccomp_r, info_w, block_r))
                except OSError as exc:
                    raise SandboxError(f"cannot start bubblewrap: {exc}") from exc
                self._children.add(child)
                if group is not None:
                    child.kill_hook = group.kill_all
                for fd in (seccomp_r, info_w, block_r):
                    os.close(fd)
                    fds.remove(fd)
                fds.remove(block_w)  # _release closes it
                sandbox_init = await self._release(info_r, block_w, group, spec)
                released = sandbox_init is not None
                outcome = await child.communicate(
                    spec.payload if released else b"",
                    output_limit=limits.output_bytes, deadline=spec.deadline,
                )
                if not released and not outcome.timed_out:
                    raise SandboxError(
                        "bubblewrap failed to set up the sandbox: "
                        + outcome.stderr.decode("utf-8", "replace").strip()
                    )
                return self._result(spec, outcome, group)
            finally:
                for fd in fds:
                    os.close(fd)
                if child is not None:
                    child.kill()
                    await child.aclose()
                    self._children.discard(child)
                if sandbox_init is not None:
                    await sandbox_init.reap()
                if group is not None:
                    await group.remove()

    async def _release(self, info_r: int, block_w: int, group: Cgroup | None,
                       spec: ExecutionSpec) -> _SandboxInit | None:
        """Confine the sandbox's pid-1, then let it execute the command.

        Returns a handle on that pid-1, or None if bubblewrap died before
        reporting (its stderr says why). Always closes ``block_w``.
        """
        try:
            try:
                info = await _read_info(info_r, spec.deadline)
            except TimeoutError:
                return None
            if info is None:
                return None
            pid = info.get("child-pid")
            if not isinstance(pid, int):
                raise SandboxError(f"bubblewrap info lacks child-pid: {info}")
            try:
                if group is not None:
                    group.add(pid)
                if self._prlimit_wrapper is None:
                    for which, value in self._rlimits(spec):
                        resource.prlimit(pid, which, (value, value))
                init = _SandboxInit(pid)
            except ProcessLookupError:
                return None
            except OSError as exc:
                raise SandboxError(f"cannot confine sandbox pid {pid}: {exc}") from exc
            try:
                os.write(block_w, b"1")
            except OSError:  # bubblewrap died after reporting; its stderr says why
                await init.reap()
                return None
            return init
        finally:
            os.close(block_w)

    def _rlimits(self, spec: ExecutionSpec) -> list[tuple[int, int]]:
        limits = spec.limits
        # The address-space cap is a floor behind the cgroup; where a cgroup
        # enforces memory, leave room for runtimes that reserve address space.
        address_space = limits.memory_bytes * (4 if self.cgroups.available else 1)
        return [
            (resource.RLIMIT_CPU, limits.cpu_seconds),
            (resource.RLIMIT_FSIZE, limits.file_size_bytes),
            (resource.RLIMIT_NOFILE, 1024),
            (resource.RLIMIT_NPROC, limits.pids + 4),  # + bubblewrap's own processes
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_AS, address_space),
        ]

    def _prlimit_argv(self, spec: ExecutionSpec) -> list[str]:
        """``prlimit --cpu=N ... --`` for hosts where we may not prlimit the sandbox."""
        assert self._prlimit_wrapper is not None  # noqa: S101
        return [self._prlimit_wrapper,
                *(f"--{_PRLIMIT_FLAGS[which]}={value}" for which, value in self._rlimits(spec)),
                "--"]

    def _result(self, spec: ExecutionSpec, outcome: ProcessOutcome,
                group: Cgroup | None) -> InvocationResult:
        rc = outcome.returncode
        exit_code, sig, error = describe_exit(rc)
        stderr = outcome.stderr
        if rc is not None and rc > 128 and sig is None:
            # bubblewrap's pid-1 reports a command killed by signal N as 128+N.
            sig = rc - 128
            exit_code, _, error = describe_exit(-sig)
        if rc == 1 and stderr.startswith(_EXEC_FAILED) and stderr.count(b"\n") <= 1:
            reason = stderr[len(_EXEC_FAILED):].decode("utf-8", "replace").strip()
            not_found = reason.endswith("No such file or directory")
            exit_code = 127 if not_found else 126
            error = (f"command not found: {spec.command[0]}" if not_found
                     else f"command could not be executed: {reason}")
            stderr = b""
        if group is not None and sig == 9 and group.oom_killed():
            error = f"out of memory: killed at the {spec.limits.memory_bytes // 2**20} MiB limit"
        if outcome.timed_out:
            exit_code, sig = None, None
            error = "timed out; the sandbox was killed"
        return InvocationResult(
            stdout=outcome.stdout, stderr=stderr, exit_code=exit_code, signal=sig, error=error,
            duration_ms=outcome.duration_s * 1000, timed_out=outcome.timed_out,
            stdout_truncated=outcome.stdout_truncated,
            stderr_truncated=outcome.stderr_truncated,
            request_id=spec.request_id, executor=self.name,
        )

    async def aclose(self) -> None:
        self._closed = True
        for child in list(self._children):
            child.kill()


async def availability() -> Availability:
    """Whether bubblewrap can make a sandbox here: tries a real one."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Availability(False, "bubblewrap (bwrap) is not installed")
    ok, why = seccomp.supported()
    if not ok:
        return Availability(False, why)
    argv = [*bwrap_argv(bwrap, tmp_bytes=1 << 20, rootfs=None), "--", "/bin/true"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        async with asyncio.timeout(10):
            _, err = await proc.communicate()
    except (OSError, TimeoutError) as exc:
        return Availability(False, f"bubblewrap failed to start: {exc}")
    if proc.returncode != 0:
        return Availability(False, f"bubblewrap cannot create namespaces: {err.decode().strip()}")
    cg = Cgroups()
    return Availability(True, f"bubblewrap works; limits: {cg.reason}; rlimits as the floor")
