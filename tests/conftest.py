"""Session fixtures and the report of which isolation tiers ran."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import TIERS, Server, assert_no_leaks, record_tier, running_server


@pytest.fixture(scope="session")
def bwrap_available() -> None:
    if shutil.which("bwrap") is None:
        record_tier("sandbox (bubblewrap)", "SKIPPED: bwrap is not installed")
        pytest.skip("bubblewrap is not installed (scripts/setup.sh installs it)")
    record_tier("sandbox (bubblewrap)", "ran")


@pytest.fixture(scope="session")
def server(bwrap_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real gateway on the sandbox executor, shared by the integration tests."""
    tmp = tmp_path_factory.mktemp("server")
    env = {"FAAS_TEST_SECRET": "gateway-secret-value"}
    with running_server(tmp, env) as srv:
        yield srv
    assert srv.proc.returncode == 0, srv.log()


@pytest.fixture
def no_leaks() -> Iterator[None]:
    yield
    assert_no_leaks()


# -- the isolation-tier summary -------------------------------------------------------
#
# Every tier is listed at the end of the run, whether its tests ran, were all skipped
# (with the reasons) or were not selected; a tier is known by its marker (pyproject's
# `markers`), so a skip inside a test (the Firecracker canary) shows up too, not only
# with -ra.

#: marker -> the tier's name in the summary (the names fixtures pass to record_tier).
TIER_MARKERS = {
    "sandbox": "sandbox (bubblewrap)",
    "docker": "docker (Docker Engine)",
    "microvm": "microvm (QEMU)",
    "firecracker": "firecracker (Firecracker VMM)",
}
_ITEM_TIERS: dict[str, list[str]] = {}
#: marker -> outcome ("passed", "failed", "error", "skipped") -> count
_TIER_COUNTS: dict[str, dict[str, int]] = {}
#: marker -> skip reason -> count
_TIER_SKIPS: dict[str, dict[str, int]] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIER_MARKERS})
        if tiers:
            _ITEM_TIERS[item.nodeid] = tiers


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    reason = " ".join(reason.removeprefix("Skipped: ").split())
    return reason if len(reason) <= 240 else reason[:237] + "..."


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    tiers = _ITEM_TIERS.get(report.nodeid)
    if not tiers or hasattr(report, "wasxfail"):
        return
    outcome: str
    if report.when == "call" or report.skipped:
        outcome = report.outcome
    elif report.failed:  # an error in setup or teardown
        outcome = "error"
    else:
        return
    for tier in tiers:
        counts = _TIER_COUNTS.setdefault(tier, {})
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "skipped":
            skips = _TIER_SKIPS.setdefault(tier, {})
            reason = _skip_reason(report)
            skips[reason] = skips.get(reason, 0) + 1


def tier_states() -> dict[str, str]:
    """Tier name -> what happened to it in this run (one line)."""
    states: dict[str, str] = {}
    for marker, name in TIER_MARKERS.items():
        counts = _TIER_COUNTS.get(marker, {})
        skips = _TIER_SKIPS.get(marker, {})
        reasons = "; ".join(f"{reason} ({n} test{'s' if n > 1 else ''})" if len(skips) > 1
                            else reason for reason, n in sorted(skips.items()))
        ran = sum(n for outcome, n in counts.items() if outcome != "skipped")
        if not counts:
            states[name] = TIERS.get(name, "not run: no test of this tier was selected")
        elif not ran:
            states[name] = f"SKIPPED: {reasons}"
        else:
            parts = [f"{counts[o]} {o}" for o in ("passed", "failed", "error", "skipped")
                     if counts.get(o)]
            states[name] = "ran: " + ", ".join(parts) + (f" (skipped: {reasons})" if skips
                                                         else "")
    for name, state in TIERS.items():
        states.setdefault(name, state)
    return states


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.section("isolation tiers")
    for name, state in tier_states().items():
        terminalreporter.write_line(f"{name:32} {state}")
