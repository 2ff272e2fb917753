"""Every defence layer of the namespace sandbox, proven on its own.

Each test fails when its layer alone is removed from the source: where two
layers would mask each other (pids.max and RLIMIT_NPROC, the cgroup memory
limit and RLIMIT_AS, the deadline's kill paths), the other one is turned off
through the executor's test-only ``SandboxLayers``; where limits can differ
(the /tmp tmpfs size and RLIMIT_FSIZE), the test makes them differ. State is
read from the host side where it can be (host uids, the call's cgroup limits).
After every call, nothing the executor started may be left (per-call leak check).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bundle_support import HOSTILE, amake_bundle, data_folder, expected
from faas.errors import SandboxError
from faas.executors import seccomp
from faas.executors.cgroups import Cgroups
from faas.executors.sandbox import SandboxExecutor
from faas.executors.sandbox_policy import SandboxLayers, SandboxPolicy
from faas.models import ExecutionSpec, FunctionBundle, InvocationResult, Limits
from faas.proc.child import ChildProcess
from helpers import (
    UID_BASE,
    UID_RANGE,
    ProcInfo,
    assert_nothing_left_by,
    descendants,
    process_table,
)

pytestmark = pytest.mark.sandbox

#: A uid base of the layer tests' own (inside the leak checks' range), so their
#: per-uid limits never meet another test's server, and the base is proven honoured.
LAYER_UID_BASE = UID_BASE + 2048
LAYER_SANDBOXES = 8
assert LAYER_UID_BASE + LAYER_SANDBOXES <= UID_BASE + UID_RANGE
MiB = 1 << 20
HERE = Path(__file__).parent

Make = Callable[..., SandboxExecutor]


@pytest.fixture
async def make(bwrap_available: None) -> AsyncIterator[Make]:
    """Build executors (optionally with one layer off); closed and leak-checked after."""
    made: list[SandboxExecutor] = []

    def build(**switches: bool) -> SandboxExecutor:
        executor = SandboxExecutor(uid_base=LAYER_UID_BASE, max_sandboxes=LAYER_SANDBOXES,
                                   policy=SandboxPolicy(layers=SandboxLayers(**switches)))
        made.append(executor)
        return executor

    yield build
    for executor in made:
        await executor.aclose()
    assert_nothing_left_by(os.getpid(), ignore=_servers())


def _servers() -> list[int]:
    """Gateways and services the session started (the shared ``server`` fixture, the
    private PostgreSQL cluster of ``tests/pg_cluster.py``, which this process adopts as a
    child subreaper once ``pg_ctl`` exits): not ours to check."""
    return [info.pid for info in descendants(os.getpid())
            if "faas.cli serve" in info.cmdline or _is_postmaster(info.cmdline)]


def _is_postmaster(cmdline: str) -> bool:
    argv = cmdline.split()
    return bool(argv) and Path(argv[0]).name == "postgres" and "-D" in argv


async def run(executor: SandboxExecutor, command: list[str], *, timeout_s: float = 20,
              payload: bytes = b"", check: bool = True, bundle: FunctionBundle | None = None,
              **limits: int) -> InvocationResult:
    """One call, then the per-call leak check: nothing below this process is left
    (``check=False`` for concurrent calls: the caller checks once they are all done)."""
    loop = asyncio.get_running_loop()
    spec = ExecutionSpec(request_id="layers", function_id="layers", command=tuple(command),
                         env={}, payload=payload, deadline=loop.time() + timeout_s,
                         limits=Limits(**limits), bundle=bundle)
    result = await executor.run(spec)
    if check:
        assert_nothing_left_by(os.getpid(), ignore=_servers())
    return result


def py(code: str) -> list[str]:
    return ["python3", "-c", code]


def sandboxed(marker: str) -> list[ProcInfo]:
    """Our own sandboxes' processes whose command line holds ``marker``."""
    return [p for p in descendants(os.getpid()) if marker in p.cmdline]


async def wait_for(marker: str, count: int = 1, timeout_s: float = 10) -> list[ProcInfo]:
    until = time.monotonic() + timeout_s
    while True:
        found = [p for p in sandboxed(marker) if p.name != "bwrap"]
        if len(found) >= count or time.monotonic() > until:
            return found
        await asyncio.sleep(0.02)


# -- the function's code at /function ------------------------------------------

@pytest.fixture
def data_dir() -> Iterator[Path]:
    folder = data_folder()
    yield folder
    shutil.rmtree(folder)


async def test_bundle_is_read_only_at_function_and_each_call_sees_its_own(
        make: Make, data_dir: Path) -> None:
    executor = make()
    one, two = await amake_bundle(data_dir, "one"), await amake_bundle(data_dir, "two")
    assert (data_dir / "bundles").stat().st_mode & 0o777 == 0o711
    handler = ["python3", "/function/handler.py"]
    result = await run(executor, handler, payload=b"hi", bundle=one)
    assert (result.exit_code, result.stdout.decode()) == (0, expected("one", "hi")), result
    first, second = await asyncio.gather(
        run(executor, handler, payload=b"a", bundle=one, check=False),
        run(executor, handler, payload=b"b", bundle=two, check=False))
    assert first.stdout.decode() == expected("one", "a"), first
    assert second.stdout.decode() == expected("two", "b"), second
    hostile = await run(executor, ["sh", "-c", HOSTILE], bundle=one)
    assert (hostile.exit_code, hostile.stdout) == (0, b""), hostile
    mounted = await run(executor, ["sh", "-c", "grep ' /function ' /proc/self/mounts"],
                        bundle=one)
    options = mounted.stdout.split()[3].split(b",")
    assert b"ro" in options and b"nosuid" in options and b"nodev" in options, mounted
    assert (one.path / "handler.py").read_text().startswith("import sys")


async def test_a_call_without_a_bundle_has_no_function_folder(make: Make) -> None:
    result = await run(make(), ["sh", "-c", "test -e /function && echo there; ls /"])
    assert result.exit_code == 0 and b"there" not in result.stdout and b"function" not in \
        result.stdout, result


async def test_a_missing_or_unreachable_bundle_is_a_clear_error(make: Make, data_dir: Path,
                                                                 ) -> None:
    gone = FunctionBundle("0" * 64, data_dir / "nosuch" / "files", 1)
    with pytest.raises(SandboxError, match="code bundle 000000000000 is not available"):
        await run(make(), ["true"], bundle=gone)
    bundle = await amake_bundle(data_dir, "private")
    data_dir.chmod(0o700)
    with pytest.raises(SandboxError, match="out of the sandbox's reach: a folder above") as err:
        await run(make(), ["true"], bundle=bundle)
    assert str(data_dir) not in str(err.value)


async def test_a_root_tree_without_a_function_folder_is_a_clear_error(
        bwrap_available: None, data_dir: Path, tmp_path: Path) -> None:
    bundle = await amake_bundle(data_dir, "tree")
    executor = SandboxExecutor(uid_base=LAYER_UID_BASE, max_sandboxes=LAYER_SANDBOXES,
                               rootfs=tmp_path)
    try:
        with pytest.raises(SandboxError, match="configured root tree has no /function"):
            await run(executor, ["true"], bundle=bundle)
    finally:
        await executor.aclose()


# -- host uids ----------------------------------------------------------------


async def test_each_sandbox_runs_as_a_host_uid_of_its_own_and_never_root(make: Make) -> None:
    """From the host: the command's real/effective/saved/fs uids are all one slot uid in
    [base, base + max_sandboxes), never 0, and two concurrent sandboxes differ."""
    executor = make()
    marker = f"{time.time_ns() % 10**6}"
    commands = [["sleep", f"3.{marker}1"], ["sleep", f"3.{marker}2"]]
    calls = [asyncio.ensure_future(run(executor, c, check=False)) for c in commands]
    try:
        found = [await wait_for(f"sleep 3.{marker}{n}") for n in (1, 2)]
        uids = []
        for procs in found:
            assert len(procs) == 1, procs
            status = Path(f"/proc/{procs[0].pid}/status").read_text()
            line = next(x for x in status.splitlines() if x.startswith("Uid:"))
            real, effective, saved, fs = (int(v) for v in line.split()[1:])
            assert real == effective == saved == fs, line
            assert real != 0
            assert LAYER_UID_BASE <= real < LAYER_UID_BASE + LAYER_SANDBOXES, real
            uids.append(real)
        assert uids[0] != uids[1], uids
    finally:
        results = await asyncio.gather(*calls)
    assert_nothing_left_by(os.getpid(), ignore=_servers())
    assert all(r.exit_code == 0 for r in results), results


# -- cgroup limits, read back from the host -------------------------------------


def _cgroup_file(pid: int, controller: str, name: str) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (not controllers and Path(
                "/sys/fs/cgroup/cgroup.controllers").exists()):
            base = Path("/sys/fs/cgroup") / (controller if controllers else "")
            return base / path.lstrip("/") / name
    raise AssertionError(f"pid {pid} has no {controller} cgroup")


async def test_the_calls_cgroup_enforces_the_requested_memory_and_pids(make: Make) -> None:
    executor = make()
    if not executor.cgroups.available:
        pytest.skip("no writable cgroup memory+pids controllers")
    marker = f"4.{time.time_ns() % 10**6}"
    call = asyncio.ensure_future(run(executor, ["sleep", marker], memory_bytes=48 * MiB,
                                     pids=37))
    try:
        (proc,) = await wait_for(f"sleep {marker}")
        v2 = executor.cgroups.version == 2
        memory = _cgroup_file(proc.pid, "memory", "memory.max" if v2 else "memory.limit_in_bytes")
        assert "/faas/" in str(memory)
        assert int(memory.read_text()) == 48 * MiB
        assert int(_cgroup_file(proc.pid, "pids", "pids.max").read_text()) == 37
    finally:
        result = await call
    assert result.exit_code == 0


# -- memory: the cgroup limit and RLIMIT_AS, each alone -----------------------

BOMB = """
import sys
chunks = []
for n in range(64):  # at most 512 MiB, touched
    chunks.append(bytearray(8 << 20))
    print((n + 1) * 8, flush=True)
print("survived", flush=True)
"""


async def test_memory_cgroup_alone_kills_a_bomb_at_the_limit_and_says_so(make: Make) -> None:
    executor = make(rlimit_as=False)
    if not executor.cgroups.available:
        pytest.skip("no writable cgroup memory+pids controllers")
    result = await run(executor, py(BOMB), memory_bytes=64 * MiB)
    reached = [int(x) for x in result.stdout.split() if x.isdigit()]
    assert b"survived" not in result.stdout, result
    assert result.signal == signal.SIGKILL, result
    assert result.error == "out of memory: killed by the cgroup memory limit of 64 MiB", result
    assert reached and max(reached) <= 64, reached
    assert b"MemoryError" not in result.stderr


async def test_rlimit_as_alone_stops_a_bomb_without_claiming_a_cgroup_oom(make: Make) -> None:
    executor = make(cgroup_memory=False)
    result = await run(executor, py(BOMB), memory_bytes=64 * MiB)
    assert b"survived" not in result.stdout, result
    assert b"MemoryError" in result.stderr, result
    assert result.exit_code == 1 and result.signal is None, result
    assert result.error == "exited with status 1", result


async def test_default_layers_report_the_limit_the_kernel_enforced(make: Make) -> None:
    """All layers on: the cgroup fires first (RLIMIT_AS sits at 4x), and the message names
    the limit read back from the group: the kernel rounds a request down to whole pages."""
    executor = make()
    if not executor.cgroups.available:
        pytest.skip("no writable cgroup memory+pids controllers")
    result = await run(executor, py(BOMB), memory_bytes=64 * MiB + 1000)
    assert result.error == "out of memory: killed by the cgroup memory limit of 64 MiB", result


# -- processes: pids.max and RLIMIT_NPROC, each alone ---------------------------

FORKS = """
import os, time
n = 0
for _ in range(100):
    try:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
    except OSError as e:
        print("refused after", n, e.errno, flush=True)
        break
else:
    print("all", n, flush=True)
"""


@pytest.mark.parametrize("off", ["cgroup_pids", "rlimit_nproc"])
async def test_each_process_limit_alone_stops_a_fork_bomb(make: Make, off: str) -> None:
    executor = make(**{off: False})
    if off == "rlimit_nproc" and not executor.cgroups.available:
        pytest.skip("no writable cgroup pids controller")
    result = await run(executor, py(FORKS), pids=32)
    words = result.stdout.split()
    assert words[:2] == [b"refused", b"after"], result
    # pids.max counts pid-1 and python: 30 forks; RLIMIT_NPROC (pids + 4) also bubblewrap: 33.
    assert 20 <= int(words[2]) <= 34 and int(words[3]) == 11, words  # EAGAIN


# -- disk: the /tmp tmpfs size and RLIMIT_FSIZE, each alone ---------------------


async def test_tmp_tmpfs_size_alone_caps_many_small_files(make: Make) -> None:
    # Four 4 MiB files, each under RLIMIT_FSIZE (64 MiB), against an 8 MiB /tmp.
    script = ("for i in 1 2 3 4; do head -c 4M /dev/zero > /tmp/f$i 2>/dev/null "
              "|| echo full; done; du -sk /tmp")
    result = await run(make(), ["sh", "-c", script], tmp_bytes=8 * MiB,
                       file_size_bytes=64 * MiB)
    out = result.stdout.split()
    assert b"full" in out, result
    assert int(out[-2]) <= 8 * 1024, result


async def test_rlimit_fsize_alone_caps_one_file_below_the_tmpfs(make: Make) -> None:
    script = "head -c 8M /dev/zero > /tmp/f; echo rc=$?; stat -c %s /tmp/f"
    result = await run(make(), ["sh", "-c", script], tmp_bytes=64 * MiB,
                       file_size_bytes=4 * MiB)
    lines = result.stdout.split()
    assert lines[0] != b"rc=0" and int(lines[1]) == 4 * MiB, result


# -- CPU ----------------------------------------------------------------------


async def test_rlimit_cpu_kills_a_cpu_loop_long_before_the_deadline(make: Make) -> None:
    started = time.monotonic()
    result = await run(make(), py("while True: pass"), timeout_s=15, cpu_seconds=1)
    assert not result.timed_out, result
    assert result.signal in (signal.SIGXCPU, signal.SIGKILL), result
    assert "out of memory" not in (result.error or "")
    assert time.monotonic() - started < 12


# -- the deadline's kill paths, each alone -------------------------------------

TICKER = ("setsid sh -c 'while :; do date +%s.%N; sleep 0.05; done' & "
          "while :; do date +%s.%N; sleep 0.05; done")


@pytest.mark.parametrize("remaining", ["cgroup_kill", "die_with_parent"])
async def test_each_deadline_kill_path_alone_ends_the_sandbox(make: Make,
                                                              remaining: str) -> None:
    """At the deadline, the sandbox (a ticker and a setsid-escaped ticker) dies at once
    through the one kill path left: the cgroup's SIGKILL, or bubblewrap's death taking
    its pid-1 along (--die-with-parent). Killing bubblewrap's process group reaches no
    sandbox process (its pid-1 has a session of its own), so it cannot mask either."""
    off = {"cgroup_kill", "die_with_parent"} - {remaining}
    executor = make(**dict.fromkeys(off, False))
    if remaining == "cgroup_kill" and not executor.cgroups.available:
        pytest.skip("no writable cgroup")
    marker = f"sh -c ticker{time.time_ns() % 10**6}"
    command = ["sh", "-c", f"{TICKER} # {marker}"]
    deadline_wall = time.time() + 1.5
    call = asyncio.ensure_future(run(executor, command, timeout_s=1.5))
    await asyncio.sleep(2.3)
    alive = [p for p in descendants(os.getpid()) if p.uid >= LAYER_UID_BASE
             and p.uid < LAYER_UID_BASE + LAYER_SANDBOXES]
    result = await call
    assert result.timed_out
    ticks = [float(t) for t in result.stdout.split()]
    assert ticks, result
    assert not alive, alive
    assert max(ticks) < deadline_wall + 0.6, (max(ticks) - deadline_wall, result)


async def test_with_both_deadline_kills_off_the_reaper_still_ends_the_sandbox(
        make: Make) -> None:
    """The last resort: nothing killed the sandbox's pid-1 at the deadline, so the reaper
    SIGKILLs it after its grace and waits for it (no zombie: the per-call check in ``run``)."""
    executor = make(cgroup_kill=False, die_with_parent=False)
    started = time.monotonic()
    result = await run(executor, ["sh", "-c", TICKER], timeout_s=1)
    assert result.timed_out
    assert time.monotonic() - started < 15


async def test_cgroup_kill_all_kills_every_member(bwrap_available: None) -> None:
    """``Cgroup.kill_all`` on its own (the deadline hook, ``empty()`` and ``remove()``
    rely on it): processes of a group, in different sessions, all die."""
    groups = Cgroups()
    if not groups.available:
        pytest.skip("no writable cgroup")
    group = await groups.acquire(memory_bytes=64 * MiB, pids=16)
    procs = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(3)]
    try:
        for p in procs:
            group.add(p.pid)
        group.kill_all()
        for p in procs:
            assert p.wait(2) == -signal.SIGKILL
    finally:
        for p in procs:
            p.kill()
            p.wait()
        await group.remove()
        await groups.close()


async def test_process_group_kill_reaches_background_children_at_the_deadline() -> None:
    """``ChildProcess``'s deadline kill SIGKILLs the whole process group (the guest
    agent's commands rely on it): children left in the group die with the main process,
    while a child that left the group with setsid is beyond it (the sandbox tier's
    cgroup kill and pid namespace exist for that one)."""
    loop = asyncio.get_running_loop()
    tag = f"{time.time_ns() % 10**6}"
    script = (f"sleep 60.{tag}1 & setsid sleep 60.{tag}2 & echo started; "
              "trap '' TERM; sleep 60")
    child = ChildProcess.spawn(["sh", "-c", script], env={"PATH": os.environ["PATH"]})
    run = asyncio.ensure_future(
        child.communicate(b"", output_limit=100, deadline=loop.time() + 1.5))
    pids: dict[str, int] = {}
    until = time.monotonic() + 5
    while len(pids) < 2 and time.monotonic() < until:
        for p in process_table().values():
            for n in ("1", "2"):
                if p.cmdline.strip() == f"sleep 60.{tag}{n}":
                    pids[n] = p.pid
        await asyncio.sleep(0.02)
    outcome = await run
    assert outcome.timed_out and outcome.stdout == b"started\n"
    await asyncio.sleep(0.3)

    def alive(pid: int) -> bool:  # a zombie (re-parented to us, the subreaper) is dead
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    states = {n: alive(pid) for n, pid in pids.items()}
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.1)
    reap_orphans()
    assert states == {"1": False, "2": True}, states


def reap_orphans() -> None:
    """Reap the zombies re-parented to this process (a subreaper once an executor exists)."""
    for info in descendants(os.getpid()):
        if info.ppid == os.getpid() and "faas.cli serve" not in info.cmdline:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(info.pid, os.WNOHANG)


# -- seccomp: verdicts the kernel gives, told apart from missing capabilities ---

NEW_NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000, "CLONE_NEWTIME": 0x00000080,
}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The compiled seccomp_probe and a file holding the sandbox's filter program."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (scripts/setup.sh installs it)")
    out = tmp_path_factory.mktemp("seccomp")
    binary = out / "seccomp_probe"
    subprocess.run([gcc, "-O1", "-Wall", "-o", str(binary), str(HERE / "seccomp_probe.c")],
                   check=True)
    filter_file = out / "filter.bpf"
    filter_file.write_bytes(seccomp.build_filter())
    return binary, filter_file


def host_probe(probe: tuple[Path, Path], *call: str,
               filtered: bool) -> subprocess.CompletedProcess[str]:
    binary, filter_file = probe
    argv = [str(binary), *(["-f", str(filter_file)] if filtered else []), *call]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: unfiltered clone(CLONE_NEW*) "
                    "must succeed for the filter's EPERM to mean anything")
@pytest.mark.parametrize("flag", sorted(NEW_NAMESPACE_FLAGS))
def test_filter_refuses_clone_with_each_namespace_flag(probe: tuple[Path, Path],
                                                       flag: str) -> None:
    """As root (every capability), clone(FLAG) succeeds; under the filter alone, EPERM."""
    value = hex(NEW_NAMESPACE_FLAGS[flag])
    assert host_probe(probe, "clone", value, filtered=False).stdout == "ok\n"
    assert host_probe(probe, "clone", value, filtered=True).stdout == "errno 1\n"
    # A plain fork still works under the filter.
    assert host_probe(probe, "clone", "0", filtered=True).stdout == "ok\n"


def test_filter_answers_clone3_with_enosys_and_kills_foreign_abis(
        probe: tuple[Path, Path]) -> None:
    """Unfiltered: clone3 forks, x32 and int 0x80 return. Filtered: ENOSYS, SIGSYS, SIGSYS."""
    assert host_probe(probe, "clone3", filtered=False).stdout == "ok\n"
    assert host_probe(probe, "clone3", filtered=True).stdout == "errno 38\n"
    for call in ("x32", "int80"):
        plain = host_probe(probe, call, filtered=False)
        assert plain.returncode == 0 and plain.stdout.startswith("returned"), (call, plain)
        assert host_probe(probe, call, filtered=True).returncode == -signal.SIGSYS, call


async def test_sandbox_commands_meet_the_filter(make: Make, probe: tuple[Path, Path]) -> None:
    """End to end: inside a sandbox, clone3 is ENOSYS (EINVAL/success without the
    filter) and the x32 and i386 ABIs die of SIGSYS (they return without it)."""
    executor = make()
    binary = probe[0].read_bytes()
    setup = "cat > /tmp/p && chmod +x /tmp/p && exec /tmp/p "
    result = await run(executor, ["sh", "-c", setup + "clone3"], payload=binary)
    assert result.stdout == b"errno 38\n", result
    for call in ("x32", "int80"):
        result = await run(executor, ["sh", "-c", setup + call], payload=binary)
        assert result.signal == signal.SIGSYS and result.stdout == b"", (call, result)

