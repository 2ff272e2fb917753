"""Build (once, cached) the small C helper that starts sandboxes as another uid.

See ``spawn_helper.c`` for why it exists. It is compiled with the host's C
compiler into ``<cache>/bin/faas-spawn-<hash>`` the first time a sandbox
executor starts; without a compiler the executor falls back to Python's
``subprocess`` uid switch plus ``prlimit(1)``, which is correct but slower.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("spawn_helper.c")


def ensure_spawn_helper(cache_dir: Path) -> tuple[Path | None, str]:
    """(path to the helper or None, a sentence saying which way sandboxes start)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None, "no C compiler: sandboxes start through subprocess + prlimit(1)"
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = (cache_dir / "bin" / f"faas-spawn-{digest}").resolve()
    if target.is_file() and os.access(target, os.X_OK):
        return target, f"sandboxes start through {target}"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=".faas-spawn-")
    os.close(fd)
    tmp = Path(name)
    try:
        proc = subprocess.run([compiler, "-O2", "-Wall", "-o", str(tmp), str(SOURCE)],
                              capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            return None, f"compiling the spawn helper failed: {proc.stderr.strip()[:300]}"
        tmp.chmod(0o755)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target, f"sandboxes start through {target}"
