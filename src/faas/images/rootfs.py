"""The guest root filesystem: Debian bookworm minbase + python3 + the faas agent, as a tarball.

``ensure_rootfs_tar(cache_dir)`` returns the path of a cached tarball built by
``mmdebstrap``; it is rebuilt only when an input changes (package list,
mirror, the agent's source files, the guest init). The same tarball feeds the
microVM ext4 image, ``docker import`` and the namespace sandbox.

Inside the tree:

* ``/opt/faas/faas/`` holds ``errors.py``, ``protocol.py``, ``secrets/names.py``, ``agent/``,
  ``proc/`` (the process core the agent runs commands with) and a bare package
  ``__init__``, precompiled to unchecked-hash ``.pyc`` so the read-only guest
  never compiles at start: ``PYTHONPATH=/opt/faas python3 -m faas.agent``;
* ``/sbin/faas-init`` is the VM's PID 1 (see ``guest_init``);
* no file keeps a setuid or setgid bit (``su``, ``mount``, ... are stripped by
  a customize hook): no tier's command can gain privileges through one.

The agent imports only the standard library, ``faas.agent``, ``faas.proc``,
``faas.protocol``, ``faas.errors`` and ``faas.secrets.names``; ``agent_sources``
checks that and refuses to build otherwise.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import py_compile
import shutil
import tempfile
from pathlib import Path

from faas.config import DEFAULT_DEBIAN_MIRROR, default_image_cache_dir
from faas.images.common import (
    FAAS_PACKAGE_DIR,
    ImageBuildError,
    build_lock,
    inputs_hash,
    remove_quietly,
    run_tool,
)
from faas.images.guest_init import INIT_SCRIPT

BUILDER_VERSION = "3"  # 3: an empty /function, the mount point of a function's code
SUITE = "bookworm"
PACKAGES = ("python3", "coreutils", "dash", "mount", "util-linux")
# Docs, man pages and translations are dead weight in a sandbox.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
)
GUEST_AGENT_DIR = "/opt/faas"
# Run by mmdebstrap on the finished tree ("$1"): no setuid/setgid file survives.
STRIP_SETID_HOOK = 'find "$1" -xdev -type f -perm /6000 -exec chmod ug-s {} +'
_AGENT_ROOT_IMPORTS = {"faas"}
_GUEST_PACKAGES = ("agent", "proc")
_GUEST_MODULES = ("errors.py", "protocol.py", "secrets/__init__.py", "secrets/names.py")


def agent_sources() -> list[tuple[str, bytes]]:
    """(path inside ``/opt/faas``, content) of every file the guest agent needs.

    Raises ``ImageBuildError`` if an agent module imports anything from
    ``faas`` beyond ``faas.agent``, ``faas.proc``, ``faas.protocol`` and ``faas.errors``.
    """
    files = [("faas/__init__.py", b'"""faas guest agent package (only the agent ships here)."""\n'),
             *((f"faas/{name}", (FAAS_PACKAGE_DIR / name).read_bytes())
               for name in _GUEST_MODULES)]
    for package in _GUEST_PACKAGES:
        for path in sorted((FAAS_PACKAGE_DIR / package).glob("*.py")):
            files.append((f"faas/{package}/{path.name}", path.read_bytes()))
    for name, data in files:
        _check_imports(name, data)
    return files


def _check_imports(name: str, source: bytes) -> None:
    tree = ast.parse(source, filename=name)
    type_checking_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking_only.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in type_checking_only:
            continue
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        for module in modules:
            root = module.split(".")[0]
            allowed = module in ("faas.errors", "faas.protocol", "faas.secrets.names") or any(
                module == f"faas.{p}" or module.startswith(f"faas.{p}.") for p in _GUEST_PACKAGES)
            if root in _AGENT_ROOT_IMPORTS and not allowed:
                raise ImageBuildError(f"guest agent file {name} imports {module}: the guest only "
                                      "ships faas.agent, faas.proc, faas.protocol, faas.errors, "
                                      "faas.secrets.names")


def rootfs_key(mirror: str = DEFAULT_DEBIAN_MIRROR) -> str:
    parts: list[bytes | str] = [BUILDER_VERSION, SUITE, mirror, *PACKAGES, *DPKG_OPTIONS,
                                INIT_SCRIPT, STRIP_SETID_HOOK]
    for name, data in agent_sources():
        parts += [name, data]
    return inputs_hash(parts)


def _stage(staging: Path) -> None:
    """Lay out the files faas adds on top of Debian, under ``staging`` (mirrors ``/``)."""
    agent_root = staging / GUEST_AGENT_DIR.lstrip("/")
    for name, data in agent_sources():
        target = agent_root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        py_compile.compile(
            str(target), cfile=importlib.util.cache_from_source(str(target)),
            dfile=f"{GUEST_AGENT_DIR}/{name}", doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    (staging / "function").mkdir()  # the agent mounts the function's code here
    init = staging / "sbin" / "faas-init"
    init.parent.mkdir(parents=True, exist_ok=True)
    init.write_text(INIT_SCRIPT)
    init.chmod(0o755)
    for dirpath, dirnames, _ in os.walk(staging):
        for d in dirnames:
            Path(dirpath, d).chmod(0o755)


def ensure_rootfs_tar(cache_dir: Path | str | None = None, *, force: bool = False,
                      mirror: str = DEFAULT_DEBIAN_MIRROR) -> Path:
    """Return the cached rootfs tarball, building it first if inputs changed (or ``force``);
    ``mirror``: the Debian mirror (``FAAS_DEBIAN_MIRROR``).

    Raises ``ImageBuildError`` when mmdebstrap fails (no network, no mirror).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_image_cache_dir()
    target = cache / f"rootfs-{rootfs_key(mirror)}.tar"
    if target.is_file() and not force:
        return target
    with build_lock(cache):
        if target.is_file() and not force:
            return target
        _build(target, mirror)
    return target


def _build(target: Path, mirror: str) -> None:
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("mmdebstrap is not installed (apt-get install mmdebstrap)")
    partial = target.with_name(target.name + ".partial")
    remove_quietly(partial)
    with tempfile.TemporaryDirectory(prefix="faas-rootfs-") as tmp:
        staging = Path(tmp) / "staging"
        staging.mkdir()
        _stage(staging)
        argv: list[str | Path] = [
            "mmdebstrap", "--variant=minbase", "--format=tar", "--quiet",
            f"--include={','.join(PACKAGES)}",
            *(f"--dpkgopt={opt}" for opt in DPKG_OPTIONS),
            f"--customize-hook=sync-in {staging} /",
            f"--customize-hook={STRIP_SETID_HOOK}",
            SUITE, partial, mirror,
        ]
        try:
            run_tool(argv, what="mmdebstrap")
            partial.replace(target)
        finally:
            remove_quietly(partial)
