"""Shared plumbing for the image builders (and the VMM binary fetch): hashing, build locks.

Every artefact is cached under a name that carries a hash of its inputs, so a
changed input gives a new name and an unchanged one is never rebuilt. Builds
take an exclusive ``flock`` on the cache folder so two processes (the test
session and ``faas image build``, or the docker executor) never build the
same thing at once, and write to a temporary name renamed into place, so a
half-written artefact is never seen.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from faas.errors import FaasError

FAAS_PACKAGE_DIR = Path(__file__).resolve().parents[1]


class ImageBuildError(FaasError):
    """Building a guest image (rootfs, kernel, initramfs, ext4) failed."""

    status = 500


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def inputs_hash(parts: Iterable[bytes | str]) -> str:
    """A short stable hash of an ordered sequence of inputs (16 hex digits)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()[:16]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def build_lock(cache_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``cache_dir`` (created if missing) while building."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def run_tool(argv: Sequence[str | Path], *, what: str, cwd: Path | None = None) -> str:
    """Run a build tool; return its stdout or raise ``ImageBuildError`` with its stderr tail."""
    try:
        proc = subprocess.run(
            [str(a) for a in argv], cwd=cwd, capture_output=True, check=False
        )
    except OSError as exc:
        raise ImageBuildError(f"{what}: cannot run {argv[0]}: {exc}") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace")[-2000:]
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}): {tail}")
    return proc.stdout.decode("utf-8", "replace")
