"""A private, throw-away PostgreSQL cluster for tests (any test folder may use it).

``running_cluster()`` runs ``initdb`` into a fresh temporary folder, starts
the server on 127.0.0.1 at a free port with its own socket folder, and on
every way out stops it (``pg_ctl stop -m immediate``, then SIGKILL if it
still runs) and removes the folder. PostgreSQL refuses to run as root, so
when the tests run as root the server runs as the ``postgres`` system user
(Debian's package creates it), or ``nobody``. TCP on loopback takes the
superuser's password (SCRAM); the socket is not used by the tests.

The binaries are looked up on ``PATH``, then in Debian's
``/usr/lib/postgresql/<version>/bin`` (highest version first);
``scripts/setup.sh`` installs Debian's ``postgresql`` when neither has one.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "faas_test"
_START_TIMEOUT_S = 60
_SETTINGS = {
    # Throw-away data: durability off for speed.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
}


class ClusterError(RuntimeError):
    """PostgreSQL could not be found or started; the message says why (and how to fix it)."""


@dataclass(frozen=True)
class PgCluster:
    host: str
    port: int
    user: str
    password: str
    socket_dir: Path

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        """A ``postgresql://`` URL of ``database`` (``password`` overrides the real one)."""
        secret = self.password if password is None else password
        return f"postgresql://{self.user}:{secret}@{self.host}:{self.port}/{database}"


def find_bin_dir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``, or ``ClusterError``."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                    key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0, reverse=True)
    if debian:
        return debian[0].parent
    raise ClusterError("PostgreSQL's initdb was not found on PATH or in /usr/lib/postgresql: "
                       "run scripts/setup.sh (it installs Debian's postgresql)")


def _server_account() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, or ``None`` when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise ClusterError("running as root, and neither a postgres nor a nobody user exists")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Runner:
    """Runs the PostgreSQL binaries as the server's account."""

    def __init__(self, bin_dir: Path, account: tuple[int, int] | None) -> None:
        self.bin_dir = bin_dir
        self.account = account

    def run(self, tool: str, *args: str, timeout: float = _START_TIMEOUT_S,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        user, group = self.account if self.account else (None, None)
        result = subprocess.run(
            [str(self.bin_dir / tool), *args], capture_output=True, text=True, timeout=timeout,
            user=user, group=group, extra_groups=[] if self.account else None,
            stdin=subprocess.DEVNULL, check=False, cwd="/")
        if check and result.returncode != 0:
            raise ClusterError(f"{tool} failed ({result.returncode}): "
                               f"{(result.stdout + result.stderr)[-2000:]}")
        return result

    def chown(self, path: Path) -> None:
        if self.account:
            os.chown(path, *self.account)


def _kill_leftover(data: Path) -> None:
    """SIGKILL the postmaster if ``pg_ctl stop`` left it running."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_cluster() -> Iterator[PgCluster]:
    """Start a private cluster; stop it and remove all of its files when the block ends."""
    runner = _Runner(find_bin_dir(), _server_account())
    # Not under pytest's tmp folders: those are 0700 root, closed to the server's account.
    base = Path(tempfile.mkdtemp(prefix="faas-pg-"))
    data, sockets, log = base / "data", base / "sockets", base / "server.log"
    started = False
    try:
        base.chmod(0o700)
        runner.chown(base)
        sockets.mkdir(mode=0o700)
        runner.chown(sockets)
        password = secrets.token_urlsafe(18)
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        runner.chown(pwfile)
        runner.run("initdb", "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                   "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                   "--locale=C", "--no-sync")
        pwfile.unlink()
        cluster = _start(runner, data, sockets, log, password)
        started = True
        yield cluster
    finally:
        if started or (data / "postmaster.pid").exists():
            runner.run("pg_ctl", "stop", "-D", str(data), "-m", "immediate", "-w",
                       timeout=30, check=False)
            _kill_leftover(data)
        shutil.rmtree(base, ignore_errors=True)


def _start(runner: _Runner, data: Path, sockets: Path, log: Path, password: str) -> PgCluster:
    """Start on a free port; a port taken between the probe and the bind is retried."""
    for _attempt in range(3):
        port = _free_port()
        settings = {**_SETTINGS, "listen_addresses": "'127.0.0.1'", "port": str(port),
                    "unix_socket_directories": f"'{sockets}'"}
        with (data / "postgresql.auto.conf").open("w") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        runner.chown(data / "postgresql.auto.conf")
        result = runner.run("pg_ctl", "start", "-D", str(data), "-l", str(log), "-w",
                            "-t", str(_START_TIMEOUT_S), check=False)
        if result.returncode == 0:
            return PgCluster("127.0.0.1", port, SUPERUSER, password, sockets)
        _kill_leftover(data)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise ClusterError(f"PostgreSQL did not start: {result.stdout}{result.stderr}\n{tail}")


async def create_database(cluster: PgCluster, name: str) -> str:
    """Create an empty database in ``cluster``; return its URL."""
    await _admin(cluster, f'CREATE DATABASE "{name}"')
    return cluster.url(name)


async def drop_database(cluster: PgCluster, name: str) -> None:
    """Drop ``name``, disconnecting whoever still uses it."""
    await _admin(cluster, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(cluster: PgCluster, statement: str) -> None:
    # Imported here: the cluster itself needs only the standard library.
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    url = cluster.url().replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()
