#!/usr/bin/env python3
"""Mutation check: every defence must have a test that fails when that defence alone is gone.

The mutants are declared in ``mutants.toml`` at the repository root (one
``[[mutant]]`` table each: a name, a file, an exact ``old`` snippet, its
``new`` replacement and the ``tests`` that must fail). For each mutant this
script

1. checks that ``old`` occurs exactly once in the file (else it stops: a
   mutant must never rot silently when the code it patches changes);
2. copies ``src/``, ``tests/``, ``scripts/`` and ``pyproject.toml`` into a
   scratch folder (``.cache`` is linked, not copied, so guest images and the
   spawn helper are reused) and applies the patch there;
3. runs only the mutant's tests with the project's venv python, from the
   scratch folder, with ``PYTHONPATH=<scratch>/src`` first, so the tests and
   every ``python -m faas.cli serve`` they start import the mutated code;
4. reports KILLED (a listed test failed), SURVIVED (they all passed) or ERROR
   (the tests did not run: not collected, all skipped, time limit).

Before the mutants, a self-check starts a real ``faas serve`` from a scratch
copy whose ``/healthz`` was patched, and stops unless the patched answer
comes back: proof that server subprocesses load the scratch copy.

A mutant marked ``expect = "survive"`` (with a ``reason``: the defence has no
test yet) is reported but does not fail the run; if it gets killed the
report says to remove the mark. The exit status is non-zero when any other
mutant survives, or any mutant errors.

Usage::

    scripts/mutants.py                   # every mutant
    scripts/mutants.py --list            # names, files, tests
    scripts/mutants.py --only NAME...    # a subset (names or fnmatch patterns)
    scripts/mutants.py --check           # only validate the declarations (fast)
    scripts/mutants.py --baseline        # first run all targeted tests unmutated

Tests that start sandboxes check that no sandbox process is left on the host,
so two runs on the same host (``--jobs 2``, or another test run) can see each
other's sandboxes: run one at a time unless the host is otherwise idle. Two
more lanes run beside them: the mutants whose tests are all in-process
(``tests/unit``, ``tests/store``, the tenancy tests: no sandbox, no server),
and those whose tests are the container and VM tiers' (``tests/docker``,
``tests/microvm``: they start no namespace sandbox and check only their own
containers and VM folders).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fnmatch
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILE = REPO / "mutants.toml"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
#: What a scratch copy holds (besides a link to .cache).
COPIED = ("src", "tests", "scripts", "pyproject.toml")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
DEFAULT_TIME_LIMIT_S = 180.0
#: Folder name prefix of scratch copies. Never "faas...": the sandbox tests
#: treat new /tmp entries named faas* or bwrap* as leaks.
SCRATCH_PREFIX = "mutant-"


class DeclarationError(Exception):
    """mutants.toml is malformed, or a snippet does not occur exactly once."""


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    k: str | None = None
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    expect: str = "killed"  # or "survive"
    reason: str = ""
    defence: str = ""


@dataclass
class Outcome:
    mutant: Mutant
    verdict: str  # KILLED | SURVIVED | ERROR
    seconds: float
    detail: str = ""
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether this outcome keeps the run green."""
        if self.verdict == "ERROR":
            return False
        if self.mutant.expect == "survive":
            return True
        return self.verdict == "KILLED"

    @property
    def label(self) -> str:
        if self.mutant.expect == "survive":
            if self.verdict == "SURVIVED":
                return "SURVIVED (expected)"
            if self.verdict == "KILLED":
                return "KILLED (remove expect)"
        return self.verdict


# -- declarations ----------------------------------------------------------------------


def load(path: Path) -> list[Mutant]:
    """Read and validate the declarations; raise DeclarationError listing every problem."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DeclarationError(f"{path}: {exc}") from exc
    defaults = data.get("defaults", {})
    default_limit = float(defaults.get("time_limit_s", DEFAULT_TIME_LIMIT_S))
    problems: list[str] = []
    mutants: list[Mutant] = []
    seen: set[str] = set()
    allowed = {"name", "file", "old", "new", "tests", "k", "time_limit_s", "expect", "reason",
               "defence"}
    for index, raw in enumerate(data.get("mutant", [])):
        where = f"mutant #{index + 1} ({raw.get('name', '?')})"
        unknown = set(raw) - allowed
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        missing = [key for key in ("name", "file", "old", "new") if not raw.get(key)]
        if missing and not (missing == ["new"] and "new" in raw):  # new = "" deletes
            problems.append(f"{where}: missing {missing}")
            continue
        name = str(raw["name"])
        if name in seen:
            problems.append(f"{where}: duplicate name")
        seen.add(name)
        tests = raw.get("tests", [])
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            problems.append(f"{where}: tests must be a list of pytest node ids")
            tests = []
        expect = str(raw.get("expect", "killed"))
        if expect not in ("killed", "survive"):
            problems.append(f"{where}: expect must be 'killed' or 'survive'")
        if expect == "survive" and not raw.get("reason"):
            problems.append(f"{where}: expect = 'survive' needs a reason")
        if expect == "killed" and not tests:
            problems.append(f"{where}: no tests: which test fails without this defence?")
        if raw["old"] == raw["new"]:
            problems.append(f"{where}: old and new are the same")
        mutant = Mutant(
            name=name, file=str(raw["file"]), old=str(raw["old"]), new=str(raw["new"]),
            tests=tuple(tests), k=raw.get("k"),
            time_limit_s=float(raw.get("time_limit_s", default_limit)), expect=expect,
            reason=str(raw.get("reason", "")), defence=str(raw.get("defence", "")),
        )
        problems += snippet_problems(mutant, REPO)
        mutants.append(mutant)
    if not mutants and not problems:
        problems.append(f"{path}: no [[mutant]] tables")
    if problems:
        raise DeclarationError("\n".join(problems))
    return mutants


def snippet_problems(mutant: Mutant, root: Path) -> list[str]:
    """Why ``mutant`` cannot be applied to the tree at ``root`` (empty: it can)."""
    path = root / mutant.file
    try:
        text = path.read_text()
    except OSError as exc:
        return [f"{mutant.name}: cannot read {mutant.file}: {exc}"]
    count = text.count(mutant.old)
    if count != 1:
        return [f"{mutant.name}: the old snippet occurs {count} times in {mutant.file} "
                f"(must be exactly once; update the mutant to the current code):\n"
                + _indent(mutant.old)]
    problems = []
    for test in mutant.tests:
        test_file = test.split("::", 1)[0]
        if not (root / test_file).exists():
            problems.append(f"{mutant.name}: test file {test_file} does not exist")
    return problems


def _indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.splitlines())


def select(mutants: list[Mutant], patterns: list[str] | None) -> list[Mutant]:
    if not patterns:
        return mutants
    chosen = [m for m in mutants if any(fnmatch.fnmatchcase(m.name, p) for p in patterns)]
    unmatched = [p for p in patterns
                 if not any(fnmatch.fnmatchcase(m.name, p) for m in mutants)]
    if unmatched:
        raise DeclarationError(f"no mutant named {unmatched} (see --list)")
    return chosen


# -- scratch copies ------------------------------------------------------------------------


def make_scratch(workdir: Path, label: str) -> Path:
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{label}-", dir=workdir))
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, scratch / name, ignore=IGNORED, symlinks=True)
        elif source.exists():
            shutil.copy2(source, scratch / name)
    if (REPO / ".cache").is_dir():
        (scratch / ".cache").symlink_to(REPO / ".cache")
    return scratch


def apply(mutant: Mutant, scratch: Path) -> None:
    problems = snippet_problems(mutant, scratch)
    if problems:
        raise DeclarationError("\n".join(problems))
    path = scratch / mutant.file
    path.write_text(path.read_text().replace(mutant.old, mutant.new, 1))


def scratch_env(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(scratch / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # Built images, the spawn helper and Docker's seccomp profile: the real cache.
    env.setdefault("FAAS_CACHE_DIR", str(REPO / ".cache"))
    env.setdefault("FAAS_IMAGE_CACHE", str(REPO / ".cache" / "images"))
    env.pop("PYTEST_ADDOPTS", None)
    return env


# -- running ---------------------------------------------------------------------------------


def run_group(argv: list[str], cwd: Path, env: dict[str, str], limit_s: float,
              log_path: Path) -> tuple[int | None, float]:
    """Run ``argv`` in a session of its own; on the time limit, stop the whole group.

    Returns (exit status or None on the time limit, seconds).
    """
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc: int | None = proc.wait(limit_s)
        except subprocess.TimeoutExpired:
            rc = None
            # SIGTERM first: test servers drain and remove their cgroups.
            for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
    return rc, time.monotonic() - started


def pytest_argv(tests: list[str], k: str | None, junit: Path) -> list[str]:
    argv = [str(VENV_PYTHON), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
            "-o", "addopts=", "--no-header", "-rfEs", f"--junitxml={junit}", *tests]
    if k:
        argv += ["-k", k]
    return argv


@dataclass
class Report:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def read_junit(path: Path) -> Report | None:
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - our own pytest's report
    except (OSError, ET.ParseError):
        return None
    report = Report()
    for case in root.iter("testcase"):
        node = f"{case.get('classname', '')}::{case.get('name', '')}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            message = " ".join((bad.get("message") or bad.tag).split())[:160]
            report.failed.append(f"{node}: {message}")
        elif (skip := case.find("skipped")) is not None:
            report.skipped.append((node, skip.get("message", "")))
        else:
            report.passed.append(node)
    return report


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def run_mutant(mutant: Mutant, workdir: Path, keep: bool) -> Outcome:
    started = time.monotonic()
    if not mutant.tests:
        return Outcome(mutant, "SURVIVED", 0.0, "no test targets this defence (not run)")
    scratch = make_scratch(workdir, mutant.name)
    try:
        apply(mutant, scratch)
        env = scratch_env(scratch)
        junit = scratch / "junit.xml"
        log_path = scratch / "pytest.log"
        rc, _ = run_group(pytest_argv(list(mutant.tests), mutant.k, junit), scratch, env,
                          mutant.time_limit_s, log_path)
        elapsed = time.monotonic() - started
        report = read_junit(junit)
        if rc is None:
            return Outcome(mutant, "ERROR", elapsed,
                           f"time limit of {mutant.time_limit_s:g}s reached; pick faster tests "
                           f"or raise time_limit_s\n{log_tail(log_path)}")
        if report is None:
            return Outcome(mutant, "ERROR", elapsed,
                           f"pytest exited {rc} without a report\n{log_tail(log_path)}")
        if rc not in (0, 1):
            # 2: collection errors (a mutant that breaks an import proves nothing),
            # 3/4: pytest itself failed or was misused, 5: nothing collected.
            return Outcome(mutant, "ERROR", elapsed,
                           f"pytest exited {rc} (collection error or no tests); "
                           f"{'; '.join(report.failed[:2])}\n{log_tail(log_path)}")
        if report.failed:
            return Outcome(mutant, "KILLED", elapsed, f"failed: {report.failed[0]}",
                           report.failed)
        if not report.passed:
            why = "; ".join(sorted({msg for _, msg in report.skipped})) or "nothing ran"
            return Outcome(mutant, "ERROR", elapsed,
                           f"the tests did not run ({why})\n{log_tail(log_path)}")
        detail = f"{len(report.passed)} passed"
        if report.skipped:
            detail += f", {len(report.skipped)} skipped"
        return Outcome(mutant, "SURVIVED", elapsed, detail)
    except DeclarationError as exc:
        return Outcome(mutant, "ERROR", time.monotonic() - started, str(exc))
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


# -- the self-check: server subprocesses load the scratch copy --------------------------------

SELF_CHECK_OLD = 'return OrjsonResponse({"status": "ok"})'
SELF_CHECK_NEW = 'return OrjsonResponse({"status": "ok", "mutant": "self-check"})'
_SELF_CHECK_CLIENT = """
import socket, subprocess, sys, time, httpx
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
env = {"FAAS_GATEWAY_PORT": str(port), "FAAS_EXECUTORS": "sandbox"}
import os
proc = subprocess.Popen([sys.executable, "-m", "faas.cli", "serve"], env={**os.environ, **env},
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            print(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).text)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        print("no answer; server status", proc.poll())
finally:
    proc.terminate()
    proc.wait(30)
"""


def self_check(workdir: Path) -> str | None:
    """None if a `faas serve` started from a scratch copy runs the scratch code, else why not."""
    mutant = Mutant("self-check", "src/faas/gateway/routes/health.py", SELF_CHECK_OLD,
                    SELF_CHECK_NEW, ())
    scratch = make_scratch(workdir, "self-check")
    try:
        apply(mutant, scratch)
        env = scratch_env(scratch)
        probe = subprocess.run([str(VENV_PYTHON), "-c", _SELF_CHECK_CLIENT], cwd=scratch,
                               env=env, capture_output=True, text=True, timeout=120, check=False)
        if '"mutant":"self-check"' not in probe.stdout:
            return (f"`faas serve` started from {scratch} did not run the patched code: "
                    f"/healthz said {probe.stdout.strip()[:300]!r} {probe.stderr[-500:]}")
        imported = subprocess.run(
            [str(VENV_PYTHON), "-c", "import faas; print(faas.__file__)"], cwd=scratch,
            env=env, capture_output=True, text=True, timeout=60, check=False).stdout.strip()
        if not imported.startswith(str(scratch)):
            return f"the scratch python imports faas from {imported}, not {scratch}/src"
        return None
    except (DeclarationError, subprocess.SubprocessError, OSError) as exc:
        return f"self-check failed: {exc}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def baseline(mutants: list[Mutant], workdir: Path, limit_s: float) -> str | None:
    """None if every targeted test passes on the unmutated code, else the failures."""
    tests = sorted({t for m in mutants for t in m.tests})
    if not tests:
        return None
    scratch = make_scratch(workdir, "baseline")
    try:
        junit, log_path = scratch / "junit.xml", scratch / "pytest.log"
        argv = [a for a in pytest_argv(tests, None, junit) if a != "-x"]
        rc, elapsed = run_group(argv, scratch, scratch_env(scratch), limit_s, log_path)
        report = read_junit(junit)
        print(f"baseline: {len(tests)} targets in {elapsed:.0f}s, exit {rc}", flush=True)
        if rc is None or report is None or report.failed or rc != 0:
            failed = report.failed if report else []
            return f"unmutated tests fail: {failed[:10]}\n{log_tail(log_path, 40)}"
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- main ----------------------------------------------------------------------------------------


#: Test folders whose tests run in the pytest process only (fakes, SQLite, a private
#: PostgreSQL): their mutants may run beside one that starts sandboxes.
IN_PROCESS_TESTS = ("tests/unit/", "tests/store/", "tests/security/test_tenancy.py",
                    "tests/security/test_key_timing.py")


def in_process(mutant: Mutant) -> bool:
    return all(test.startswith(IN_PROCESS_TESTS) for test in mutant.tests)


#: Tests of the tiers that start no namespace sandbox: beside the sandbox tier's lane.
OTHER_TIER_TESTS = ("tests/docker/", "tests/microvm/")


def lane_of(mutant: Mutant) -> int:
    """0: sandboxes and servers; 1: the container and VM tiers; 2: in-process."""
    if in_process(mutant):
        return 2
    return 1 if all(test.startswith(OTHER_TIER_TESTS) for test in mutant.tests) else 0


def print_table(outcomes: list[Outcome], total_s: float) -> None:
    width = max(len(o.mutant.name) for o in outcomes)
    print()
    print(f"{'mutant':{width}}  {'verdict':22}  {'time':>6}  detail")
    for o in outcomes:
        first = o.detail.splitlines()[0] if o.detail else ""
        if o.mutant.expect == "survive" and o.verdict == "SURVIVED":
            first = f"{first}; why: {o.mutant.reason}"
        print(f"{o.mutant.name:{width}}  {o.label:22}  {o.seconds:5.1f}s  {first}")
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.label] = counts.get(o.label, 0) + 1
    summary = ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))
    print(f"\n{len(outcomes)} mutants: {summary}; total {total_s:.0f}s "
          f"({total_s / 60:.1f} min)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE, help="declarations")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="names or fnmatch patterns")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--check", action="store_true",
                        help="only validate the declarations (snippets occur exactly once)")
    parser.add_argument("--jobs", "-j", type=int, default=1,
                        help="mutants run at once (default 1; see the module docstring)")
    parser.add_argument("--baseline", action="store_true",
                        help="first run every targeted test on the unmutated code")
    parser.add_argument("--skip-self-check", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `--list | head` ends quietly

    try:
        mutants = select(load(args.file), args.only)
    except DeclarationError as exc:
        print(f"mutants: invalid declarations in {args.file}:\n{exc}", file=sys.stderr)
        return 2
    if args.list:
        for m in mutants:
            mark = f"  [expected to survive: {m.reason}]" if m.expect == "survive" else ""
            print(f"{m.name}  ({m.file}){mark}")
            for t in m.tests:
                print(f"    {t}")
            if m.k:
                print(f"    -k {m.k}")
        return 0
    if args.check:
        print(f"mutants: {len(mutants)} declarations valid; every snippet occurs exactly once")
        return 0
    if not VENV_PYTHON.exists():
        print(f"mutants: no venv python at {VENV_PYTHON} (run scripts/setup.sh)",
              file=sys.stderr)
        return 2

    started = time.monotonic()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if not args.skip_self_check:
        problem = self_check(args.workdir)
        if problem:
            print(f"mutants: {problem}", file=sys.stderr)
            return 2
        print(f"self-check: a `faas serve` started from a scratch copy runs that copy's code "
              f"({time.monotonic() - started:.1f}s)", flush=True)
    if args.baseline:
        problem = baseline(mutants, args.workdir, limit_s=900)
        if problem:
            print(f"mutants: {problem}", file=sys.stderr)
            return 2

    lock = threading.Lock()
    outcomes: dict[str, Outcome] = {}

    def one(m: Mutant) -> None:
        outcome = run_mutant(m, args.workdir, args.keep)
        with lock:
            outcomes[m.name] = outcome
            first = outcome.detail.splitlines()[0] if outcome.detail else ""
            print(f"[{len(outcomes):2}/{len(mutants)}] {m.name}: {outcome.label} "
                  f"({outcome.seconds:.1f}s) {first}", flush=True)
            if outcome.verdict == "ERROR":
                print(_indent(outcome.detail), flush=True)

    # Three lanes side by side: mutants whose tests are all in-process (no sandbox, no
    # server, no host-wide leak check); those of the container and VM tiers (their leak
    # checks look at their own containers and VM folders, and they start no namespace
    # sandbox); and the rest (namespace sandboxes and servers, host-wide leak checks), one
    # at a time.
    lanes = [[m for m in mutants if lane_of(m) == number] for number in range(3)]

    def lane(members: list[Mutant]) -> None:
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            list(pool.map(one, members))

    with concurrent.futures.ThreadPoolExecutor(len(lanes)) as runner:
        list(runner.map(lane, lanes))
    ordered = [outcomes[m.name] for m in mutants]
    print_table(ordered, time.monotonic() - started)
    bad = [o for o in ordered if not o.ok]
    if bad:
        print(f"\nmutants: FAILED: {', '.join(f'{o.mutant.name} ({o.label})' for o in bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
