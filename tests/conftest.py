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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIERS:
        terminalreporter.section("isolation tiers")
        for name, state in sorted(TIERS.items()):
            terminalreporter.write_line(f"{name:32} {state}")
