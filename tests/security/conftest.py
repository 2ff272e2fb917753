"""Fixtures of the hostile-caller tests: a gateway tuned so attacks finish fast."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import Server, running_server

#: Sandbox tier only, a 2 s header/body deadline and a connection cap of 500
#: (so a few thousand slow clients exercise the cap and its eviction).
HOSTILE_ENV = {
    "FAAS_EXECUTORS": "sandbox",
    "FAAS_HTTP_READ_TIMEOUT_S": "2",
    "FAAS_MAX_CONNECTIONS": "500",
}


@pytest.fixture(scope="module")
def hostile(bwrap_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One gateway shared by the attacks of a module (each attack checks it afterwards)."""
    with running_server(tmp_path_factory.mktemp("hostile"), HOSTILE_ENV) as srv:
        yield srv
    assert srv.proc.returncode == 0, srv.log()[-4000:]
