"""``faas serve`` and API keys: where it may run open, where it refuses, when open mode ends.

A real ``faas serve`` each time, on a free port, stopped with SIGTERM on
every path (``serving``). Without keys it runs open on loopback (logging
that it does), refuses a non-loopback address unless ``--insecure``, and
stops running open within the key cache time (1 s) once a key is made on the
store by ``faas admin create-key`` while it runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from async_support import wait_until
from helpers import create_key, free_port, open_data_dir

pytestmark = pytest.mark.sandbox

SERVE_ENV = {"FAAS_EXECUTORS": "sandbox", "FAAS_DEFAULT_EXECUTOR": "sandbox", "FAAS_LOG": "info"}
#: How long a refusal may take: the executors are probed and the store opened first.
REFUSED_WITHIN_S = 30.0
#: The server keeps what it learnt of keys this long; open mode must end by then (+ slack).
OPEN_ENDS_WITHIN_S = 3.0


@dataclass
class Serving:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def serve_env(data_dir: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_")}
    return {**clean, **SERVE_ENV, "FAAS_DATA_DIR": str(data_dir)}


@contextlib.contextmanager
def serving(tmp_path: Path, data_dir: Path, *argv: str) -> Iterator[Serving]:
    """``faas serve --port FREE ARGV``, ready (/healthz answers on 127.0.0.1); always stopped
    with SIGTERM (SIGKILL after 30 s) and reaped, and its exit status checked."""
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "faas.cli", "serve", "--port", str(port),
                                 *argv], env=serve_env(data_dir), stdout=log,
                                stderr=subprocess.STDOUT)
    served = Serving(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"faas serve exited:\n{served.log()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{served.url}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"faas serve did not start:\n{served.log()}"
            time.sleep(0.05)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, served.log()[-4000:]



@pytest.fixture
def data_dir() -> Iterator[Path]:
    with open_data_dir() as data:
        yield data


def test_a_public_address_without_keys_is_refused(bwrap_available: None,
                                                  data_dir: Path) -> None:
    start = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "faas.cli", "serve", "--host", "0.0.0.0",
                               "--port", str(free_port())], env=serve_env(data_dir),
                              capture_output=True, text=True, timeout=REFUSED_WITHIN_S)
    except subprocess.TimeoutExpired as exc:  # run() killed and reaped it
        raise AssertionError(f"faas serve did not refuse: {exc.stderr!r}") from None
    took = time.monotonic() - start
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "faas admin create-key" in done.stderr and "--insecure" in done.stderr, done.stderr
    assert "0.0.0.0" in done.stderr and "Traceback" not in done.stderr, done.stderr
    print(f"refused in {took:.1f} s")


def test_insecure_runs_open_on_a_public_address(bwrap_available: None, data_dir: Path,
                                                tmp_path: Path) -> None:
    with serving(tmp_path, data_dir, "--host", "0.0.0.0", "--insecure") as srv:
        assert "running OPEN on 0.0.0.0 (--insecure)" in srv.log(), srv.log()
        whoami = httpx.get(f"{srv.url}/whoami", timeout=10)
        assert whoami.json() == {"tenant": "default", "role": "admin", "key_id": None}


def test_loopback_runs_open_until_a_key_exists(bwrap_available: None, data_dir: Path,
                                               tmp_path: Path) -> None:
    with serving(tmp_path, data_dir) as srv, httpx.Client(base_url=srv.url,
                                                          timeout=10) as c:
        assert "running OPEN" in srv.log(), srv.log()
        assert c.get("/functions").status_code == 200
        assert c.get("/whoami").json()["key_id"] is None
        key = create_key(data_dir, role="developer")
        took = wait_until(lambda: c.get("/functions").status_code == 401, OPEN_ENDS_WITHIN_S)
        print(f"open mode ended {took:.2f} s after the key was made")
        assert c.get("/whoami").headers["www-authenticate"] == "Bearer"
        auth = {"Authorization": f"Bearer {key}"}
        assert c.get("/functions", headers=auth).status_code == 200
        assert c.get("/whoami", headers=auth).json()["role"] == "developer"


def test_a_public_address_with_a_key_starts_and_requires_it(bwrap_available: None,
                                                            data_dir: Path,
                                                            tmp_path: Path) -> None:
    key = create_key(data_dir)
    with serving(tmp_path, data_dir, "--host", "0.0.0.0") as srv, \
            httpx.Client(base_url=srv.url, timeout=10) as c:
        assert "API keys required" in srv.log() and "OPEN" not in srv.log(), srv.log()
        assert c.get("/whoami").status_code == 401
        assert c.get("/functions").status_code == 401
        assert c.get("/healthz").status_code == 200  # public
        mine = c.get("/whoami", headers={"Authorization": f"Bearer {key}"})
        assert mine.json()["role"] == "admin", mine.text
    assert key not in srv.log()
