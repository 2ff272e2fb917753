"""``DockerExecutor``: one fresh, locked-down Docker container per invocation.

Per invocation the executor creates a container from ``spec.image`` (never
pulling; the body is ``container.ContainerPolicy.create_body``), attaches to
its stdio, starts it, writes the payload to stdin and half-closes it, drains
the multiplexed stdout/stderr stream into capped buffers (``stdio``,
``stream``), waits for the exit status and removes the container: on success,
failure, timeout, cancellation and ``aclose()`` alike.

Every daemon call goes through ``engine.Engine`` (httpx over the unix socket,
plus a raw asyncio connection for the attach stream). Nothing blocks a
thread, so a long-running container costs a socket, not a worker thread, and
cancellation is immediate.

``aclose()`` removes whatever this executor still owns,
``sweep_dead_instances()`` (at start-up) removes what servers that no longer
run left, never a live server's, and ``sweep(everything=True)`` clears every
managed container (see ``labels``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from faas.errors import ExecutorClosed, FaasError, SandboxError, ValidationError
from faas.executors.docker import seccomp_profile as profiles
from faas.executors.docker.container import DEFAULT_USER, ContainerPolicy
from faas.executors.docker.engine import DEFAULT_BASE_URL, Engine, StartRefused, Stream
from faas.executors.docker.labels import MANAGED_LABEL, OWNER_LABEL
from faas.executors.docker.secret_files import DEFAULT_ROOT, SecretFolders, numeric_user
from faas.executors.docker.stdio import pump, read_all
from faas.executors.docker.stream import Demux
from faas.executors.docker.sweep import remove_dead_instances
from faas.models import ExecutionSpec, InvocationResult
from faas.proc.outcome import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    describe_exit,
    describe_oom,
    describe_timeout,
    not_found,
)

__all__ = ["DockerExecutor"]

log = logging.getLogger(__name__)

_SIGKILL_STATUS = 128 + 9
# After a deadline kill, how long to keep reading output already in flight.
_DRAIN_AFTER_KILL_S = 0.5
_T = TypeVar("_T")


def start_failure(message: str, command: str) -> tuple[int, str] | None:
    """(exit_code, error) when the OCI runtime could not exec the command, else None.

    runc reports ``exec: "x": executable file not found in $PATH``, ``stat
    /x: no such file or directory``, ``permission denied`` or ``exec format
    error``; these are the user's command failing, reported like a shell would.
    """
    lowered = message.lower()
    if "exec:" not in lowered and "executable file not found" not in lowered:
        return None
    if "not found" in lowered or "no such file or directory" in lowered:
        return EXIT_NOT_FOUND, not_found(command)
    if "permission denied" in lowered or "exec format error" in lowered:
        return EXIT_NOT_EXECUTABLE, f"command not executable: {command}"
    return None


async def _step(call: Awaitable[_T], in_flight: list[asyncio.Future[Any]]) -> _T:
    """Await a daemon call; if interrupted, leave it running and listed in ``in_flight``.

    The call goes on at the daemon whatever we do (a create we stop waiting
    for still makes its container): the caller removes the container once
    every call in ``in_flight`` is done.
    """
    task = asyncio.ensure_future(call)
    # Its outcome may never be awaited: mark exceptions retrieved (no asyncio warning).
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    in_flight.append(task)
    result = await asyncio.shield(task)
    in_flight.remove(task)
    return result


async def _uninterrupted(awaitable: Awaitable[_T]) -> _T:
    """Await ``awaitable`` to completion even if the caller is cancelled, then re-raise.

    Used for daemon calls whose effect must be known before cleanup (a create
    that the daemon finishes after we stopped listening would leak a
    container).
    """
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            log.debug("daemon call failed after cancellation: %s", task.exception())
        raise


class DockerExecutor:
    """Runs each ``ExecutionSpec`` in a fresh, locked-down Docker container.

    Settings (all explicit, with defaults that work against a local dockerd):

    ``base_url``        Engine endpoint, ``unix:///var/run/docker.sock`` or ``tcp://h:p``.
    ``default_image``   image used when ``spec.image`` is ``None`` (else a 400).
    ``runtime``         OCI runtime name registered with the daemon (e.g. ``runsc``);
                        ``None`` uses the daemon's default (runc).
    ``user``            ``uid:gid`` the command runs as (default nobody, 65534:65534).
    ``init``            run Docker's tiny init as PID 1 (reaps zombies, forwards signals).
    ``seccomp_profile`` path to a JSON seccomp profile of your own, passed unchanged;
                        ``None`` passes ``profiles.profile()``: Docker's default
                        plus the socket-family rule, or the same policy as the
                        namespace sandbox's filter (never unconfined).
    ``api_timeout_s``   bound on each control call (create, start, remove...).
    ``name``            the executor's name in results and in the registry.
    ``transport``       the Engine API's HTTP transport (tests pass ``httpx.MockTransport``);
                        ``None`` connects to ``base_url``.
    ``secrets_root``    the host tmpfs folder of the calls' secrets (``secret_files``).
    """

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        default_image: str | None = None,
        runtime: str | None = None,
        user: str = DEFAULT_USER,
        init: bool = False,
        seccomp_profile: Path | str | None = None,
        api_timeout_s: float = 30.0,
        name: str = "docker",
        transport: httpx.AsyncBaseTransport | None = None,
        secrets_root: Path = DEFAULT_ROOT,
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.default_image = default_image
        self.runtime = runtime
        self.user = user
        self.init = init
        self.api_timeout_s = api_timeout_s
        try:
            self._engine = Engine(base_url, timeout_s=api_timeout_s, transport=transport)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        self._security_opt = ["no-new-privileges"]
        if seccomp_profile is not None:
            try:
                profile = Path(seccomp_profile).read_text()
            except OSError as exc:
                raise ValidationError(
                    f"cannot read seccomp profile {seccomp_profile}: {exc}"
                ) from exc
            self.seccomp_source = str(seccomp_profile)
        else:
            profile, self.seccomp_source = profiles.profile()
        self._security_opt.append(f"seccomp={profile}")
        self.owner = secrets.token_hex(8)
        self._policy = ContainerPolicy(user=user, init=init, runtime=runtime,
                                       security_opt=tuple(self._security_opt), owner=self.owner)
        self.secret_folders = SecretFolders(secrets_root)
        self._live: set[str] = set()
        self._removals: dict[asyncio.Task[None], str] = {}
        self._closed = False

    # -- the contract ----------------------------------------------------------

    async def run(self, spec: ExecutionSpec) -> InvocationResult:
        """Run ``spec`` in a fresh container; see the module docstring for the guarantees."""
        if self._closed:
            raise ExecutorClosed(self.name)
        image = spec.image or self.default_image
        if not image:
            raise ValidationError("the docker executor needs an image (the request's `image`)")
        loop = asyncio.get_running_loop()
        started = loop.time()
        budget = max(0.0, spec.deadline - started)
        name = f"faas-{secrets.token_hex(8)}"
        demux = Demux(spec.limits.output_bytes)
        result = InvocationResult(request_id=spec.request_id, executor=self.name)
        conn: Stream | None = None
        ran = False
        # create/start calls the deadline or a cancellation interrupted: still in
        # flight at the daemon, so the container is removed once they are done.
        in_flight: list[asyncio.Future[Any]] = []
        folder = self._secrets_folder(spec)
        try:
            timeout = asyncio.timeout_at(spec.deadline)
            try:
                async with timeout:
                    await _step(self._create(spec, image, name, folder), in_flight)
                    conn = await self._engine.attach(name)
                    failure = await _step(self._start(name, spec.command[0]), in_flight)
                    if failure is not None:
                        result.exit_code, result.error = failure
                    else:
                        ran = True
                        await pump(conn, spec.payload, demux)
                        status = await self._engine.wait_container(name)
                        self._describe(result, status, await self._was_oom(name, status))
            except TimeoutError:
                if not timeout.expired():
                    raise
                # Reported as the sandbox tier does: no exit status of our own kill.
                result.timed_out = True
                result.exit_code = result.signal = None
                result.error = describe_timeout("the container", budget)
                if ran:
                    await _uninterrupted(self._engine.kill_container(name))
                    if conn is not None:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(_DRAIN_AFTER_KILL_S):
                                await read_all(conn[0], demux)
            result.duration_ms = (loop.time() - started) * 1000
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Only FaasErrors leave the executor (malformed daemon answers, fd exhaustion).
            raise SandboxError(f"docker executor failed: {exc!r}") from exc
        finally:
            try:
                if conn is not None:
                    # abort(), not close(): close() would wait forever to flush a
                    # payload the command never read.
                    conn[1].transport.abort()
                if in_flight:
                    # Answer now; the daemon may hold the container for a long time
                    # (a start with a huge environment) and refuses to remove it
                    # until then (a start that comes later finds no secrets folder).
                    self._remove_later(name, in_flight)
                else:
                    await _uninterrupted(self._remove(name))
            finally:
                if folder is not None:
                    self.secret_folders.remove(folder)
        result.stdout, result.stderr = demux.stdout, demux.stderr
        result.stdout_truncated, result.stderr_truncated = demux.truncated
        return result

    # -- one container ---------------------------------------------------------

    def _create_body(self, spec: ExecutionSpec, image: str,
                     secrets: Path | None = None) -> dict[str, Any]:
        return self._policy.create_body(spec, image, secrets)

    def _secrets_folder(self, spec: ExecutionSpec) -> Path | None:
        """The call's secrets in a fresh host tmpfs folder (``secret_files``); None: none."""
        if not spec.secrets:
            return None
        owner = numeric_user(self.user)
        if owner is None:
            raise SandboxError(f"{self.name}: secrets need a numeric container user "
                               f"(uid:gid), not {self.user!r}")
        return self.secret_folders.make(spec.secrets, *owner)

    async def _create(self, spec: ExecutionSpec, image: str, name: str,
                      secrets: Path | None) -> None:
        self._live.add(name)
        body = self._create_body(spec, image, secrets)
        for warning in await self._engine.create_container(name, body, runtime=self.runtime):
            log.debug("docker create %s: %s", name, warning)

    async def _start(self, name: str, command: str) -> tuple[int, str] | None:
        """Start the container; (exit_code, error) if the command itself could not run."""
        try:
            await self._engine.start_container(name)
        except StartRefused as exc:
            failure = start_failure(exc.message, command)
            if failure is None:
                raise
            return failure
        return None

    async def _was_oom(self, name: str, status: int | None) -> int | None:
        """The memory limit in force when the OOM killer struck (0: none), else None.

        Only a SIGKILL can be the OOM killer; other statuses skip the round
        trip. The limit is read from the inspected container
        (``HostConfig.Memory``, what the daemon put in the container's memory
        cgroup), never from the request, so the report names the limit that
        actually fired.
        """
        if status != _SIGKILL_STATUS:
            return None
        info = await self._engine.inspect_container(name)
        if info is None or not (info.get("State") or {}).get("OOMKilled"):
            return None
        limit = (info.get("HostConfig") or {}).get("Memory")
        return limit if isinstance(limit, int) and limit > 0 else 0

    @staticmethod
    def _describe(result: InvocationResult, status: int | None, oom_limit: int | None) -> None:
        # The Engine reports a death by signal N as 128+N, as a shell would.
        result.exit_code, result.signal, result.error = describe_exit(status, shell_status=True)
        if oom_limit is not None:  # worded as the sandbox tier words it (0: no limit)
            result.error = describe_oom(oom_limit or None)

    async def _remove(self, name: str) -> None:
        await self._engine.remove_container(name)
        self._live.discard(name)

    def _remove_later(self, name: str, in_flight: list[asyncio.Future[Any]]) -> None:
        """Remove ``name`` once the daemon calls in ``in_flight`` end (tracked; aclose awaits)."""

        async def remove() -> None:
            await asyncio.wait(in_flight)
            for call in in_flight:  # their outcome no longer matters; the container goes
                if not call.cancelled() and call.exception() is not None:
                    log.debug("daemon call for %s failed after the caller left: %r",
                              name, call.exception())
            try:
                await self._remove(name)
            except FaasError as exc:
                log.warning("docker executor: removing %s failed: %s", name, exc)

        task = asyncio.create_task(remove(), name=f"remove {name}")
        self._removals[task] = name
        task.add_done_callback(self._removals.pop)

    # -- lifecycle -------------------------------------------------------------

    async def sweep(self, *, everything: bool = False) -> int:
        """Remove this executor's containers (or every ``faas.managed`` one); return the count.

        ``everything=True`` is for start-up on a host where this server is the
        only faas user of the daemon: it clears leftovers of a crashed run.
        """
        label = f"{MANAGED_LABEL}=1" if everything else f"{OWNER_LABEL}={self.owner}"
        names = list(await self._engine.labelled_containers(label))
        names += [n for n in self._live if not everything]
        await asyncio.gather(*(self._remove(n) for n in set(names)))
        return len(set(names))

    async def sweep_dead_instances(self) -> int:
        """Remove containers (and secrets folders) left by servers that no longer run;
        return the number of containers (``sweep``)."""
        swept = await asyncio.to_thread(self.secret_folders.sweep_dead)
        if swept:
            log.info("docker executor: removed %d secrets folder(s) of dead servers", swept)
        return await remove_dead_instances(self._engine)

    async def aclose(self) -> None:
        """Remove every container this executor still owns and close the client. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._removals:
                # Removals waiting for the daemon to finish a create or start.
                # Bounded: what is still pending then carries this server's
                # instance label, and the next start's sweep removes it.
                _, late = await asyncio.wait(set(self._removals), timeout=self.api_timeout_s)
                for task in late:
                    task.cancel()
                    self._live.discard(self._removals.get(task, ""))
                if late:
                    log.warning("docker executor: %d container removal(s) still waiting for "
                                "the daemon at close; left to the next start's sweep", len(late))
                    await asyncio.wait(late)
            if self._live:
                await self.sweep()
        except FaasError as exc:
            log.warning("docker executor: cleanup at close failed: %s", exc)
        finally:
            await self._engine.aclose()

