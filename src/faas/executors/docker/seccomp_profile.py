"""The seccomp profile the Docker tier passes by default (``security_opt seccomp=<json>``).

Docker's own default profile lets ``socket(2)`` name any address family, so a
container with ``--network none`` can still open AF_VSOCK sockets, which no
network namespace confines. The container tier therefore never runs with the
daemon's built-in profile; it passes one of two profiles, both carrying the
socket-family policy of ``faas.executors.seccomp`` (unix, inet, inet6 and
netlink allowed; any other family EAFNOSUPPORT):

1. **Docker's default profile plus the family rule** (preferred): Docker's
   profile is an allowlist (everything not listed fails with EPERM), stricter
   than a denylist can be. It is not exposed by the Engine API (it is compiled
   into dockerd), so it is read from a file: Debian ships it in
   ``golang-github-docker-docker-dev`` (same source package as ``docker.io``).
   That package drags in a Go toolchain, so setup extracts just the one file
   into ``<cache>/seccomp/docker-default.json`` (``python -m
   faas.executors.docker.seccomp_profile fetch``: ``apt-get download`` and
   ``dpkg-deb``, no install); an installed package is used as well.
   ``socket`` and ``socketpair`` are taken out of its unconditional allow
   list and allowed only for the four families.
2. **Generated from ``faas.executors.seccomp``'s policy** (when no copy of
   Docker's profile is present): the same declarative policy the namespace
   sandbox's classic-BPF filter is built from, rendered as a Docker profile:
   allow by default; EPERM for ``BLOCKED_X86_64``; ENOSYS for ``clone3`` (libc
   falls back to ``clone``); EPERM for ``clone`` with any CLONE_NEW* flag;
   EAFNOSUPPORT for the other socket families; only the x86-64 ABI is listed,
   so a system call of another ABI kills the process as in the sandbox (an
   i386 ``int 0x80`` ended in SIGSYS under runc here; Docker's own profile
   lets the i386 and x32 ABIs through its allowlist). One policy, two
   renderings, so the tiers cannot drift apart.

An operator's own profile (``DockerExecutor(seccomp_profile=...)``) replaces
both and is passed unchanged.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from faas.config import default_cache_dir
from faas.executors import seccomp

__all__ = [
    "DEFAULT_PROFILE_PATHS",
    "docker_default_profile",
    "family_rules",
    "fetch",
    "generated_profile",
    "profile",
    "with_family_rule",
]

log = logging.getLogger(__name__)

#: Where a copy of Docker's own default profile is looked for, first found wins.
DEFAULT_PROFILE_PATHS: tuple[Path, ...] = (
    default_cache_dir() / "seccomp" / "docker-default.json",
    Path("/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json"),
)

_SOCKET_CALLS = ["socket", "socketpair"]
_DEBIAN_PACKAGE = "golang-github-docker-docker-dev"


def _arg0(op: str, value: int, value_two: int = 0) -> list[dict[str, Any]]:
    return [{"index": 0, "value": value, "valueTwo": value_two, "op": op}]


def family_rules(*, with_allow: bool) -> list[dict[str, Any]]:
    """Rules refusing every socket family but the allowed ones with EAFNOSUPPORT.

    One comparison per rule: runc turns several comparisons of the same
    argument in one rule into alternatives, which is easy to misread. The
    refusals cover every other value of arg0 (each one below the largest
    allowed family, and everything above it), so they also hold under an
    allow-by-default profile; ``with_allow`` adds the explicit allow rules an
    allowlist profile needs.
    """
    allowed = sorted(set(seccomp.ALLOWED_SOCKET_FAMILIES.values()))
    refuse = {"names": _SOCKET_CALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EAFNOSUPPORT}
    rules: list[dict[str, Any]] = []
    if with_allow:
        rules += [{"names": _SOCKET_CALLS, "action": "SCMP_ACT_ALLOW",
                   "args": _arg0("SCMP_CMP_EQ", family)} for family in allowed]
    rules += [{**refuse, "args": _arg0("SCMP_CMP_EQ", value)}
              for value in range(allowed[-1]) if value not in allowed]
    rules.append({**refuse, "args": _arg0("SCMP_CMP_GT", allowed[-1])})
    return rules


def generated_profile() -> dict[str, Any]:
    """``faas.executors.seccomp``'s policy as a Docker profile (allow by default)."""
    rules: list[dict[str, Any]] = [
        {"names": sorted(seccomp.BLOCKED_X86_64), "action": "SCMP_ACT_ERRNO",
         "errnoRet": errno.EPERM},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
    ]
    # "any CLONE_NEW* bit set" is one rule per bit: (flags & bit) == bit.
    bits = [1 << n for n in range(32) if seccomp.CLONE_NEW_MASK & (1 << n)]
    rules += [{"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM,
               "args": _arg0("SCMP_CMP_MASKED_EQ", bit, bit)} for bit in bits]
    rules += family_rules(with_allow=False)
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": rules,
    }


def with_family_rule(docker_default: dict[str, Any]) -> dict[str, Any]:
    """Docker's default (allowlist) profile with ``socket``/``socketpair`` restricted."""
    rules: list[dict[str, Any]] = []
    for rule in docker_default["syscalls"]:
        names = [n for n in rule.get("names", []) if n not in _SOCKET_CALLS]
        if names:
            rules.append({**rule, "names": names})
    return {**docker_default, "syscalls": rules + family_rules(with_allow=True)}


def docker_default_profile(paths: tuple[Path, ...] | None = None) -> dict[str, Any] | None:
    """Docker's own default profile from the first readable copy in ``paths``, else None."""
    for path in DEFAULT_PROFILE_PATHS if paths is None else paths:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            log.warning("ignoring Docker seccomp profile %s: %s", path, exc)
            continue
        if (isinstance(data, dict) and data.get("defaultAction") == "SCMP_ACT_ERRNO"
                and isinstance(data.get("syscalls"), list)):
            return data
        log.warning("ignoring Docker seccomp profile %s: not an allowlist profile", path)
    return None


def profile(paths: tuple[Path, ...] | None = None) -> tuple[str, str]:
    """(profile JSON, which one) for the container tier's default ``seccomp=`` option."""
    base = docker_default_profile(paths)
    if base is not None:
        return json.dumps(with_family_rule(base)), "docker-default+families"
    return json.dumps(generated_profile()), "generated"


def fetch(target: Path = DEFAULT_PROFILE_PATHS[0]) -> Path:
    """Extract Docker's default profile from Debian's package into ``target`` (no install).

    Raises ``OSError`` or ``subprocess.CalledProcessError`` when apt or dpkg fail.
    """
    member = "./" + str(DEFAULT_PROFILE_PATHS[1]).lstrip("/")
    with tempfile.TemporaryDirectory(prefix="faas-seccomp-") as work:
        subprocess.run(["apt-get", "download", "-q", _DEBIAN_PACKAGE], cwd=work, check=True,
                       stdout=subprocess.DEVNULL, timeout=300)
        debs = sorted(Path(work).glob("*.deb"))
        if not debs:
            raise FileNotFoundError(f"apt-get download {_DEBIAN_PACKAGE} produced no .deb")
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(debs[0])], check=True,
                             capture_output=True, timeout=120).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        extracted = archive.extractfile(member)
        if extracted is None:
            raise FileNotFoundError(f"{member} is not a file in {_DEBIAN_PACKAGE}")
        data = extracted.read()
    json.loads(data)  # refuse to store something that is not JSON
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


if __name__ == "__main__":  # python -m faas.executors.docker.seccomp_profile fetch
    if sys.argv[1:] != ["fetch"]:
        print("usage: python -m faas.executors.docker.seccomp_profile fetch", file=sys.stderr)
        raise SystemExit(2)
    print(fetch())
