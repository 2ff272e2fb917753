"""The namespace-sandbox executor (bubblewrap): the default tier, no daemon, no KVM.

Each invocation gets a fresh sandbox:

* new user, pid, ipc, uts, mount, net and cgroup namespaces (``--unshare-all``):
  no network at all, not even loopback to the gateway; further user
  namespaces disabled;
* a read-only root holding only the host's ``/usr`` (or a configured rootfs
  tree) and a few files from ``/etc``; a private size-capped tmpfs ``/tmp``;
  fresh ``/proc`` with the host's kernel command line masked; a minimal
  read-only ``/dev`` whose only writable part is a size-capped ``/dev/shm``;
* a deployed function's code (``spec.bundle``) bound read-only at
  ``/function`` (``SandboxPolicy.call_argv``); without a bundle, no ``/function``;
* the call's secrets (``spec.secrets``) as 0400 files of the command's uid in
  a size-capped read-only tmpfs at ``/run/secrets`` (0500), copied by
  bubblewrap from memfds (``--file FD``): never a host file, an argument or
  a variable; without secrets, no mount;
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
import logging
import os
import resource
import shutil
import stat
from pathlib import Path

from faas.config import default_cache_dir
from faas.errors import ExecutorClosed, ExecutorUnavailable, SandboxError
from faas.executors import seccomp
from faas.executors.base import Availability
from faas.executors.cgroups import Cgroup, Cgroups
from faas.executors.sandbox_policy import BASE_ENV, DEFAULT_POLICY, SandboxPolicy
from faas.executors.sandbox_start import (
    SandboxInit,
    UidPool,
    become_subreaper,
    env_args_fd,
    read_info,
    secret_fds,
)
from faas.executors.spawn_helper import ensure_spawn_helper
from faas.models import ExecutionSpec, InvocationResult
from faas.proc.child import ChildProcess
from faas.proc.outcome import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    ProcessOutcome,
    describe_exit,
    describe_oom,
    describe_timeout,
    not_executable,
    not_found,
)
from faas.secrets.names import SECRETS_DIR
from faas.secrets.values import secrets_bytes

log = logging.getLogger("faas.executors.sandbox")
_EXEC_FAILED = b"bwrap: execvp "
_PROBE_S = 10.0
_PRLIMIT_FLAGS = {resource.RLIMIT_CPU: "cpu", resource.RLIMIT_FSIZE: "fsize",
                  resource.RLIMIT_NOFILE: "nofile", resource.RLIMIT_NPROC: "nproc",
                  resource.RLIMIT_CORE: "core", resource.RLIMIT_AS: "as"}


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
        self._spawn_helper, _ = ensure_spawn_helper(
            cache_dir or default_cache_dir())
        self._prlimit = shutil.which("prlimit")
        if self._spawn_helper is None and self._prlimit is None:
            raise ExecutorUnavailable("neither the spawn helper nor prlimit(1) is available")
        self._children: set[ChildProcess] = set()
        self._closed = False

    def argv_for(self, tmp_bytes: int) -> list[str]:
        argv = self._static_argv.get(tmp_bytes)
        if argv is None:
            argv = self.policy.bwrap_argv(self._bwrap, tmp_bytes=tmp_bytes, rootfs=self._rootfs,
                                          empty_fd=self.empty_fd)
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
        sandbox_init: SandboxInit | None = None
        with self._uids.lease() as host_uid:
            try:
                if self.cgroups.available:
                    policy = self.policy.layers
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
                if (spec.bundle is not None and self._rootfs is not None
                        and not (self._rootfs / "function").is_dir()):
                    # bubblewrap cannot make the mount point in a read-only root.
                    raise SandboxError("the sandbox's configured root tree has no /function "
                                       "folder to show the function's code at")
                run_tmpfs = bool(spec.secrets) and self._needs_run_tmpfs()
                function_fd = _open_bundle(spec)
                if function_fd is not None:
                    fds.append(function_fd)
                secret_files = secret_fds(spec.secrets, fds)
                argv = [*self._launcher(spec, host_uid), *self.argv_for(limits.tmp_bytes),
                        *self.policy.call_argv(function_fd, tuple(secret_files),
                                               secrets_bytes(spec.secrets), run_tmpfs),
                        "--args", str(env_fd), "--seccomp", str(seccomp_r),
                        "--info-fd", str(info_w), "--block-fd", str(block_r),
                        "--", *spec.command]
                try:
                    switch = None if self._spawn_helper else host_uid
                    # The launcher (root) and bubblewrap get a fixed environment; the
                    # request's variables reach only the command (bwrap --setenv).
                    child = ChildProcess.spawn(argv, env=BASE_ENV, user=switch, group=switch,
                                               pass_fds=(seccomp_r, env_fd, info_w, block_r,
                                                         self.empty_fd,
                                                         *_fds_of(function_fd),
                                                         *(fd for _, fd in secret_files)))
                except OSError as exc:
                    raise SandboxError(f"cannot start bubblewrap: {exc}") from exc
                self._children.add(child)
                if group is not None and self.policy.layers.cgroup_kill:
                    child.kill_hook = group.kill_all
                for fd in (seccomp_r, env_fd, info_w, block_r, *_fds_of(function_fd),
                           *(fd for _, fd in secret_files)):
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
                       spec: ExecutionSpec) -> SandboxInit | None:
        """Confine the sandbox's pid-1, then let it execute the command.

        Returns a handle on that pid-1, or None if bubblewrap died before
        reporting (its stderr says why). Always closes ``block_w``.
        """
        try:
            try:
                info = await read_info(info_r, spec.deadline)
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
                init = SandboxInit(pid)
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

    def _needs_run_tmpfs(self) -> bool:
        """Whether a configured root tree needs a tmpfs on its ``/run`` to hold the
        ``/run/secrets`` mount point (the read-only tree cannot get a new folder)."""
        if self._rootfs is None or (self._rootfs / SECRETS_DIR.lstrip("/")).is_dir():
            return False
        if not (self._rootfs / "run").is_dir():
            raise SandboxError(f"the sandbox's configured root tree has no /run folder to "
                               f"show the call's secrets at {SECRETS_DIR}")
        return True

    def _launcher(self, spec: ExecutionSpec, host_uid: int) -> list[str]:
        """What runs before bubblewrap: sets the rlimits (and the uid, for the helper)."""
        limits = self.policy.rlimits(spec.limits, cgroup_memory=self.cgroups.available)
        if self._spawn_helper is not None:
            return [str(self._spawn_helper), str(host_uid), str(host_uid),
                    *(f"{which}={value}" for which, value in limits), "--"]
        assert self._prlimit is not None  # noqa: S101 - checked in __init__
        flags = (f"--{_PRLIMIT_FLAGS[which]}={value}" for which, value in limits)
        return [self._prlimit, *flags, "--"]

    def _result(self, spec: ExecutionSpec, outcome: ProcessOutcome,
                group: Cgroup | None) -> InvocationResult:
        # bubblewrap's pid 1 reports a command killed by signal N as 128+N.
        rc = outcome.returncode
        exit_code, sig, error = describe_exit(rc, shell_status=True)
        stderr = outcome.stderr
        if rc == 1 and stderr.startswith(_EXEC_FAILED) and stderr.count(b"\n") <= 1:
            reason = stderr[len(_EXEC_FAILED):].decode("utf-8", "replace").strip()
            command = spec.command[0]
            if reason.endswith("No such file or directory"):
                exit_code, error = EXIT_NOT_FOUND, not_found(command)
            else:
                exit_code = EXIT_NOT_EXECUTABLE
                error = not_executable(command, reason.removeprefix(f"{command}: "))
            stderr = b""
        if group is not None and sig == 9 and group.oom_killed():
            # Name the limit the kernel enforced (read back from the group), not the request's.
            error = describe_oom(group.memory_limit())
        if outcome.timed_out:
            exit_code, sig = None, None
            error = describe_timeout("the sandbox")
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


def _open_bundle(spec: ExecutionSpec) -> int | None:
    """An ``O_PATH`` descriptor of the call's unpacked bundle, opened as the server.

    bubblewrap runs as the sandbox's unprivileged host uid and resolves the
    folder's path itself, so every folder above it must be traversable by
    others (``o+x``; 0711 keeps them unlistable): checked here, so a private
    data folder is a clear error rather than bubblewrap's "Permission denied".
    """
    if spec.bundle is None:
        return None
    what = f"the function's code bundle {spec.bundle.sha256[:12]}"
    try:
        fd = os.open(spec.bundle.path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"{what} is not available: {exc.strerror}") from exc
    for folder in (spec.bundle.path, *spec.bundle.path.parents):
        if not folder.stat().st_mode & stat.S_IXOTH:
            os.close(fd)
            # The host path goes to the server's log only, never to a caller.
            log.error("%s: %s must be traversable by others (chmod o+x, e.g. 0711)",
                      what, folder)
            raise SandboxError(f"{what} is out of the sandbox's reach: a folder above it is "
                               "not traversable by others (see the server log)")
    return fd


def _fds_of(fd: int | None) -> tuple[int, ...]:
    return () if fd is None else (fd,)


async def availability() -> Availability:
    """Whether bubblewrap can make a sandbox here: tries a real one."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Availability(False, "bubblewrap (bwrap) is not installed")
    ok, why = seccomp.supported()
    if not ok:
        return Availability(False, why)
    argv = [*DEFAULT_POLICY.bwrap_argv(bwrap, tmp_bytes=1 << 20, rootfs=None),
            *DEFAULT_POLICY.call_argv(None), "--", "/bin/true"]
    try:
        child = ChildProcess.spawn(argv, env=BASE_ENV)
    except OSError as exc:
        return Availability(False, f"bubblewrap failed to start: {exc}")
    # On the deadline the child (bubblewrap and its sandbox) is killed and reaped.
    loop = asyncio.get_running_loop()
    outcome = await child.communicate(b"", output_limit=4096, deadline=loop.time() + _PROBE_S)
    if outcome.timed_out:
        return Availability(False, f"bubblewrap did not finish a sandbox within {_PROBE_S:g}s")
    if outcome.returncode != 0:
        why = outcome.stderr.decode("utf-8", "replace").strip()
        return Availability(False, f"bubblewrap cannot create namespaces: {why}")
    cg = Cgroups()
    return Availability(True, f"bubblewrap works; limits: {cg.reason}; rlimits as the floor")
