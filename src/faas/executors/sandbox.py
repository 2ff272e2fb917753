"""The namespace-sandbox executor (bubblewrap): the default tier, no daemon, no KVM.

Each invocation gets a fresh sandbox:

* new user, pid, ipc, uts, mount, net and cgroup namespaces (``--unshare-all``):
  no network at all, not even loopback to the gateway; further user
  namespaces disabled;
* a read-only root holding only the host's ``/usr`` (or a configured rootfs
  tree) and a few files from ``/etc``; a private size-capped tmpfs ``/tmp``;
  fresh ``/proc`` with the host's kernel command line masked; a minimal
  read-only ``/dev`` whose only writable part is a size-capped ``/dev/shm``;
* the command runs as uid 1000 inside, mapped to a host uid of its own
  (``sandbox_uid_base + slot``) that owns nothing on the host, so per-user
  rlimits count this sandbox alone and no host file is readable through
  ownership;
* all capabilities dropped, ``no_new_privs`` (bubblewrap always sets it), the
  seccomp filter of ``faas.executors.seccomp``;
* an environment of exactly the request's ``env_vars`` over a minimal
  PATH/HOME/LANG, handed to bubblewrap as ``--setenv`` arguments through an
  ``--args`` memfd so they never act on the launcher or bubblewrap (both
  start with the fixed minimal environment);
* limits: memory and pids through a cgroup (v1 or v2), and rlimits as the floor
  (CPU seconds, file size, open files, processes, no core dumps).

Start sequence, race-free: a launcher (the compiled ``faas-spawn`` helper, or
``prlimit(1)`` under subprocess's uid switch) sets the rlimits and the host
uid, then executes bubblewrap with ``--info-fd`` and ``--block-fd``; bubblewrap
reports the sandbox's pid-1 and waits. The executor moves that pid into the
cgroup and only then releases it to execute the command, so nothing the
command forks can escape the limits.

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
import logging
import os
import resource
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from faas.agent.execute import describe_exit, describe_oom
from faas.agent.process import ChildProcess, ProcessOutcome
from faas.config import default_cache_dir
from faas.errors import ExecutorClosed, ExecutorUnavailable, SandboxError
from faas.executors import seccomp
from faas.executors.base import Availability
from faas.executors.cgroups import Cgroup, Cgroups
from faas.executors.spawn_helper import ensure_spawn_helper
from faas.models import ExecutionSpec, InvocationResult

log = logging.getLogger("faas.executors.sandbox")
SANDBOX_UID = 1000
SHM_BYTES = 64 * 1024 * 1024
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
            "USER": "sandbox"}
_ETC_FILES = ("/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime", "/etc/mime.types")
_EXEC_FAILED = b"bwrap: execvp "
_PR_SET_CHILD_SUBREAPER = 36
_PRLIMIT_FLAGS = {resource.RLIMIT_CPU: "cpu", resource.RLIMIT_FSIZE: "fsize",
                  resource.RLIMIT_NOFILE: "nofile", resource.RLIMIT_NPROC: "nproc",
                  resource.RLIMIT_CORE: "core", resource.RLIMIT_AS: "as"}


@dataclass(frozen=True, slots=True)
class SandboxPolicy:
    """Which defence layers a ``SandboxExecutor`` applies: every one, by default.

    For tests only: each switch turns one layer off so that a test can prove
    another layer holds on its own (e.g. ``RLIMIT_NPROC`` with ``pids.max``
    off). It is a constructor argument and nothing else: no setting, HTTP
    field or environment variable reaches it.
    """

    cgroup_memory: bool = True        # memory.max / memory.limit_in_bytes
    cgroup_pids: bool = True          # pids.max
    rlimit_as: bool = True            # RLIMIT_AS (the memory floor)
    rlimit_nproc: bool = True         # RLIMIT_NPROC (the process-count floor)
    cgroup_kill: bool = True          # at the deadline, SIGKILL the whole cgroup
    die_with_parent: bool = True      # bubblewrap --die-with-parent: its pid-1 dies with it


DEFAULT_POLICY = SandboxPolicy()


def _own_hard_limit(which: int) -> int:
    """This process's hard limit (a switched-off rlimit layer: nothing tighter than ours)."""
    return resource.getrlimit(which)[1]


def env_args_fd(env: dict[str, str]) -> int:
    """A memfd of NUL-separated ``--setenv KEY VALUE`` arguments for ``bwrap --args``.

    The request's variables must not reach the launcher (root) or bubblewrap
    itself (``LD_PRELOAD``, ``LD_AUDIT``, ... would act on them), and must
    not appear on a command line that every host user can read.
    """
    fd = os.memfd_create("faas-env", os.MFD_CLOEXEC)
    try:
        data = b"".join(b"--setenv\0" + k.encode() + b"\0" + v.encode() + b"\0"
                        for k, v in env.items())
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


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
        exited: asyncio.Future[None] = loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(self.fd, on_exit)
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(exited)  # (a cancelled future could not be awaited again)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.fd, signal.SIGKILL)
            # Its exit (tearing down the pid namespace) takes a moment: wait for it, or
            # the WNOHANG below finds it still running and it stays a zombie for good.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(exited)
        finally:
            loop.remove_reader(self.fd)
        with contextlib.suppress(ChildProcessError, OSError):
            # Never blocks: WNOHANG, and the process has exited (or was killed).
            os.waitid(os.P_PIDFD, self.fd, os.WEXITED | os.WNOHANG)  # noqa: ASYNC222
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


def bwrap_argv(bwrap: str, *, tmp_bytes: int, rootfs: Path | None,
               empty_fd: int | None = None, die_with_parent: bool = True) -> list[str]:
    """The invocation-independent part of the bubblewrap command line.

    ``empty_fd`` (an empty file bubblewrap reads; it must be passed to the
    child) masks ``/proc/cmdline``, which would show the host's kernel boot
    arguments.
    """
    argv = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns",
            *(["--die-with-parent"] if die_with_parent else []),
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
    argv += ["--proc", "/proc"]
    if empty_fd is not None:
        argv += ["--ro-bind-data", str(empty_fd), "/proc/cmdline"]
    argv += ["--dev", "/dev",
             "--size", str(min(tmp_bytes, SHM_BYTES)), "--perms", "1777", "--tmpfs", "/dev/shm",
             "--remount-ro", "/dev",
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
        cache_dir: Path | None = None,
        policy: SandboxPolicy = DEFAULT_POLICY,
    ) -> None:
        found = bwrap or shutil.which("bwrap")
        if found is None:
            raise ExecutorUnavailable("bubblewrap (bwrap) is not installed")
        ok, why = seccomp.supported()
        if not ok:
            raise ExecutorUnavailable(why)
        self._bwrap = found
        self.policy = policy
        self._rootfs = rootfs
        self._filter = seccomp.build_filter()
        self._uids = UidPool(uid_base, max_sandboxes)
        self._max_sandboxes = max_sandboxes
        self.cgroups = Cgroups(cgroup_root)
        if require_cgroups and not self.cgroups.available:
            raise ExecutorUnavailable(self.cgroups.reason)
        if self.cgroups.available:
            swept = self.cgroups.sweep_dead_owners()
            if swept:
                log.info("removed %d cgroups left by servers that died", swept)
        self._static_argv: dict[int, list[str]] = {}
        # Never written: reads at any offset give EOF, so every sandbox may share it.
        self.empty_fd = os.memfd_create("faas-empty", os.MFD_CLOEXEC)
        become_subreaper()
        # rlimits and the uid switch happen before bubblewrap runs: through
        # the compiled spawn helper (one small exec, and Python may vfork), or
        # else through subprocess's uid switch plus util-linux prlimit(1).
        self._spawn_helper, self.start_path = ensure_spawn_helper(
            cache_dir or default_cache_dir())
        self._prlimit = shutil.which("prlimit")
        if self._spawn_helper is None and self._prlimit is None:
            raise ExecutorUnavailable("neither the spawn helper nor prlimit(1) is available")
        self._children: set[ChildProcess] = set()
        self._closed = False

    def argv_for(self, tmp_bytes: int) -> list[str]:
        argv = self._static_argv.get(tmp_bytes)
        if argv is None:
            argv = bwrap_argv(self._bwrap, tmp_bytes=tmp_bytes, rootfs=self._rootfs,
                              empty_fd=self.empty_fd,
                              die_with_parent=self.policy.die_with_parent)
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
            raise ExecutorClosed(self.name)
        limits = spec.limits
        group: Cgroup | None = None
        fds: list[int] = []
        child: ChildProcess | None = None
        sandbox_init: _SandboxInit | None = None
        with self._uids.lease() as host_uid:
            try:
                if self.cgroups.available:
                    policy = self.policy
                    group = await self.cgroups.acquire(
                        memory_bytes=limits.memory_bytes if policy.cgroup_memory else None,
                        pids=limits.pids if policy.cgroup_pids else None)
                seccomp_r = self.seccomp_fd()
                fds.append(seccomp_r)
                env_fd = env_args_fd(spec.env)
                fds.append(env_fd)
                info_r, info_w = os.pipe()
                block_r, block_w = os.pipe()
                fds += [info_r, info_w, block_r, block_w]
                argv = [*self._launcher(spec, host_uid), *self.argv_for(limits.tmp_bytes),
                        "--args", str(env_fd), "--seccomp", str(seccomp_r),
                        "--info-fd", str(info_w), "--block-fd", str(block_r),
                        "--", *spec.command]
                try:
                    switch = None if self._spawn_helper else host_uid
                    # The launcher (root) and bubblewrap get a fixed environment; the
                    # request's variables reach only the command (bwrap --setenv).
                    child = ChildProcess.spawn(argv, env=BASE_ENV, user=switch, group=switch,
                                               pass_fds=(seccomp_r, env_fd, info_w, block_r,
                                                         self.empty_fd))
                except OSError as exc:
                    raise SandboxError(f"cannot start bubblewrap: {exc}") from exc
                self._children.add(child)
                if group is not None and self.policy.cgroup_kill:
                    child.kill_hook = group.kill_all
                for fd in (seccomp_r, env_fd, info_w, block_r):
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
                    await self.cgroups.release(group, keep=self._max_sandboxes)

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
        policy = self.policy
        return [
            (resource.RLIMIT_CPU, limits.cpu_seconds),
            (resource.RLIMIT_FSIZE, limits.file_size_bytes),
            (resource.RLIMIT_NOFILE, 1024),
            # + bubblewrap's own processes
            (resource.RLIMIT_NPROC, limits.pids + 4 if policy.rlimit_nproc
             else _own_hard_limit(resource.RLIMIT_NPROC)),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_AS, address_space if policy.rlimit_as
             else _own_hard_limit(resource.RLIMIT_AS)),
        ]

    def _launcher(self, spec: ExecutionSpec, host_uid: int) -> list[str]:
        """What runs before bubblewrap: sets the rlimits (and the uid, for the helper)."""
        limits = self._rlimits(spec)
        if self._spawn_helper is not None:
            return [str(self._spawn_helper), str(host_uid), str(host_uid),
                    *(f"{which}={value}" for which, value in limits), "--"]
        assert self._prlimit is not None  # noqa: S101 - checked in __init__
        flags = (f"--{_PRLIMIT_FLAGS[which]}={value}" for which, value in limits)
        return [self._prlimit, *flags, "--"]

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
            # Name the limit the kernel enforced (read back from the group), not the request's.
            error = describe_oom(group.memory_limit())
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
        first = not self._closed
        self._closed = True
        for child in list(self._children):
            child.kill()
        await self.cgroups.close()
        if first:
            os.close(self.empty_fd)


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
