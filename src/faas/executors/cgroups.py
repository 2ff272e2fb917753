"""Per-invocation cgroups for memory and process-count limits, v1 or v2.

Detected once at start:

* v2 (most production hosts): ``/sys/fs/cgroup`` is a cgroup2 mount with the
  ``memory`` and ``pids`` controllers; limits are ``memory.max``,
  ``memory.swap.max`` and ``pids.max``; OOM kills are counted in
  ``memory.events``; ``cgroup.kill`` kills a whole group at once.
* v1 (and the v1/v2 hybrid of the build machines): the ``memory`` and ``pids``
  hierarchies under ``/sys/fs/cgroup/<controller>/``; limits are
  ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes`` where swap
  accounting exists) and ``pids.max``; OOM kills are in ``memory.oom_control``.
* neither writable: ``Cgroups.available`` is False and the sandbox relies on
  rlimits alone (``faas doctor`` says so).

A group lives under ``<root>/<name>`` in each hierarchy; ``remove()`` kills
whatever is left and removes the directories, retrying while the kernel
finishes tearing processes down. A group's name starts with the instance id
of the server that made it (``faas.instance``): ``sweep_dead_owners()``, run
when an executor starts, removes the groups of servers that died without
cleaning up, and never those of a live one.

Making and removing a memory cgroup costs about a quarter of a sandbox start
on the build machines, so ``acquire``/``release`` keep emptied groups for
reuse: a group goes back to the pool only once no process is left in it, and
its OOM counter is read relative to the moment it was handed out. Nothing of
the previous user survives in an empty group but reclaimable page-cache
charges. ``close()`` removes every pooled group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from pathlib import Path

from faas import instance
from faas.errors import SandboxError

CGROUP_FS = Path("/sys/fs/cgroup")


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class Cgroup:
    """One invocation's group (a directory per hierarchy)."""

    def __init__(self, dirs: list[Path], version: int) -> None:
        self.dirs = dirs
        self.version = version
        self._removed = False
        self.limits: tuple[int | None, int | None] | None = None
        self.oom_baseline = 0

    def add(self, pid: int) -> None:
        for d in self.dirs:
            _write(d / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return found

    def kill_all(self) -> None:
        """SIGKILL every process in the group. Safe to call repeatedly."""
        if self.version == 2:
            kill_file = self.dirs[0] / "cgroup.kill"
            if kill_file.exists():
                with contextlib.suppress(OSError):
                    _write(kill_file, "1")
                return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def oom_kills(self) -> int:
        for d in self.dirs:
            name = "memory.events" if self.version == 2 else "memory.oom_control"
            with contextlib.suppress(OSError):
                for line in (d / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        return 0

    def oom_killed(self) -> bool:
        """Whether the kernel OOM-killed a process here since the group was handed out."""
        return self.oom_kills() > self.oom_baseline

    def set_limits(self, memory_bytes: int | None, pids: int | None) -> None:
        """Set the memory and process-count limits; None leaves that one unlimited."""
        if self.limits == (memory_bytes, pids):
            return
        if self.version == 2:
            d = self.dirs[0]
            _write(d / "memory.max", "max" if memory_bytes is None else str(memory_bytes))
            with contextlib.suppress(FileNotFoundError):
                _write(d / "memory.swap.max", "0")
            _write(d / "pids.max", "max" if pids is None else str(pids))
        else:
            mem, pid_dir = self.dirs
            swap = mem / "memory.memsw.limit_in_bytes"
            value = "-1" if memory_bytes is None else str(memory_bytes)
            # memsw must stay >= the memory limit: order the writes accordingly.
            old = None if self.limits is None else self.limits[0]
            raising = (self.limits is None or memory_bytes is None
                       or (old is not None and memory_bytes > old))
            if raising and swap.exists():
                with contextlib.suppress(OSError):
                    _write(swap, value)
            _write(mem / "memory.limit_in_bytes", value)
            if swap.exists():
                _write(swap, value)
            _write(pid_dir / "pids.max", "max" if pids is None else str(pids))
        self.limits = (memory_bytes, pids)

    def memory_limit(self) -> int | None:
        """The memory limit the kernel enforces on this group, in bytes (None: unlimited)."""
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        text = (self.dirs[0] / name).read_text().strip()
        if text == "max":
            return None
        value = int(text)
        # v1 reports "unlimited" as the largest page-aligned counter value.
        return None if value >= 2**62 else value

    async def empty(self, timeout_s: float = 5.0) -> bool:
        """Kill every process and wait until none is left; False if they will not go."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout_s
        while True:
            self.kill_all()
            if not self.pids():
                return True
            if loop.time() > give_up:
                return False
            await asyncio.sleep(0.005)

    async def remove(self, timeout_s: float = 5.0) -> None:
        """Kill what is left and remove the group; raise SandboxError if it will not go."""
        if self._removed:
            return
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout_s
        while pending := self.try_remove():
            if loop.time() > give_up:
                raise SandboxError(f"cgroup {pending[0]} still busy after {timeout_s}s")
            await asyncio.sleep(0.005)

    def try_remove(self) -> list[Path]:
        """Kill every member and remove what directories the kernel lets go; return the rest.

        A directory stays (EBUSY) while the last processes exit; call again.
        """
        self.kill_all()
        for d in list(self.dirs):
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:  # EBUSY while the last processes exit
                continue
            self.dirs.remove(d)
        if not self.dirs:
            self._removed = True
        return list(self.dirs)


class Cgroups:
    """Creates per-invocation groups under ``root`` in whichever hierarchy the host has."""

    def __init__(self, root: str = "faas", fs: Path = CGROUP_FS) -> None:
        self.root = root
        self.version = 0
        self.reason = ""
        self._parents: list[Path] = []
        self._free: list[Cgroup] = []
        self._made = 0
        try:
            self._setup(fs)
        except OSError as exc:
            self.version, self._parents = 0, []
            self.reason = f"cgroups not usable: {exc}"

    @property
    def available(self) -> bool:
        return self.version != 0

    def _setup(self, fs: Path) -> None:
        controllers = fs / "cgroup.controllers"
        if controllers.exists():
            names = controllers.read_text().split()
            if {"memory", "pids"} <= set(names):
                parent = fs / self.root
                parent.mkdir(exist_ok=True)
                _write(fs / "cgroup.subtree_control", "+memory +pids")
                _write(parent / "cgroup.subtree_control", "+memory +pids")
                self.version, self._parents = 2, [parent]
                self.reason = f"cgroup v2 at {parent}"
                return
        mem, pids = fs / "memory", fs / "pids"
        if (mem / "cgroup.procs").exists() and (pids / "cgroup.procs").exists():
            parents = [mem / self.root, pids / self.root]
            for p in parents:
                p.mkdir(exist_ok=True)
            self.version, self._parents = 1, parents
            self.reason = f"cgroup v1 memory+pids under {mem}/{self.root} and {pids}/{self.root}"
            return
        self.reason = "no writable cgroup memory+pids controllers (v1 or v2) found"

    def create(self, name: str, *, memory_bytes: int | None, pids: int | None) -> Cgroup:
        """Make the group and set its limits. Raises SandboxError if the kernel refuses."""
        if not self.available:
            raise SandboxError(self.reason)
        dirs = [p / name for p in self._parents]
        group = Cgroup([], self.version)
        try:
            for d in dirs:
                d.mkdir()
                group.dirs.append(d)
            group.set_limits(memory_bytes, pids)
        except OSError as exc:
            for d in group.dirs:
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise SandboxError(f"cannot create cgroup {name}: {exc}") from exc
        return group

    async def acquire(self, *, memory_bytes: int | None, pids: int | None) -> Cgroup:
        """An empty group with these limits (None: unlimited): a pooled one if any, else new."""
        while self._free:
            group = self._free.pop()
            try:
                group.set_limits(memory_bytes, pids)
            except OSError:
                await group.remove()
                continue
            group.oom_baseline = group.oom_kills()
            return group
        self._made += 1
        name = f"g{instance.instance_id()}-{secrets.token_hex(3)}-{self._made}"
        group = self.create(name, memory_bytes=memory_bytes, pids=pids)
        group.oom_baseline = group.oom_kills()
        return group

    async def release(self, group: Cgroup, keep: int) -> None:
        """Empty ``group`` and pool it (at most ``keep`` pooled), or remove it."""
        if len(self._free) < keep and await group.empty():
            self._free.append(group)
        else:
            await group.remove()

    async def close(self) -> None:
        """Remove every pooled group."""
        while self._free:
            await self._free.pop().remove()

    def sweep_dead_owners(self, timeout_s: float = 5.0) -> int:
        """Kill and remove groups left by servers that are gone; return how many.

        Blocking (used once at start, before serving). A group whose owner
        still runs, or whose name carries no owner, is left alone.
        """
        dead: dict[str, list[Path]] = {}
        for group in self.leftovers():
            owner = instance.find_owner(group.name)
            if owner is not None and not instance.alive(owner):
                dead.setdefault(group.name, []).append(group)
        give_up = time.monotonic() + timeout_s
        for dirs in dead.values():
            leftover = Cgroup(dirs, self.version)
            while pending := leftover.try_remove():
                if time.monotonic() > give_up:
                    raise SandboxError(f"leftover cgroup {pending[0].name} will not go")
                time.sleep(0.01)
        return len(dead)

    def leftovers(self) -> list[Path]:
        """Child groups still present under our root (for leak checks)."""
        found: list[Path] = []
        for p in self._parents:
            with contextlib.suppress(OSError):
                found += [c for c in p.iterdir() if c.is_dir()]
        return found
