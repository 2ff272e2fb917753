"""The seccomp policy, decoded: the sandbox's BPF program and the Docker tier's profiles."""

from __future__ import annotations

import errno
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from faas.executors import seccomp
from faas.executors.docker import seccomp_profile

ALLOW = 0x7FFF0000
KILL = 0x80000000
X86_64 = 0xC000003E


def errno_ret(code: int) -> int:
    return 0x00050000 | code


def run_bpf(prog: bytes, nr: int, args: tuple[int, ...] = (), arch: int = X86_64) -> int:
    """A tiny classic-BPF interpreter over ``struct seccomp_data`` (the opcodes the filter uses)."""
    regs = [*args, *[0] * (6 - len(args))]
    data = struct.pack("<iIQ6Q", nr, arch, 0, *[a & (2**64 - 1) for a in regs])
    insns = [struct.unpack_from("<HBBI", prog, off) for off in range(0, len(prog), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:  # ld w abs
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code == 0x06:  # ret k
            return int(k)
        elif code in (0x15, 0x35, 0x45):  # jeq, jge, jset
            hit = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if hit else jf)
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


FILTER = seccomp.build_filter()
AF_VSOCK, AF_PACKET = 40, 17


@pytest.mark.parametrize("family", [1, 2, 10, 16])
def test_filter_allows_the_four_socket_families(family: int) -> None:
    assert run_bpf(FILTER, seccomp.SYS_SOCKET, (family, 1, 0)) == ALLOW
    assert run_bpf(FILTER, seccomp.SYS_SOCKETPAIR, (family, 1, 0, 0)) == ALLOW
    # The kernel reads the family as an int: garbage in the upper half changes nothing.
    assert run_bpf(FILTER, seccomp.SYS_SOCKET, ((7 << 32) | family, 1, 0)) == ALLOW


@pytest.mark.parametrize("family", [0, 3, 9, 11, 15, 17, AF_VSOCK, 45, 2**31, 2**32 - 1])
def test_filter_refuses_other_families_with_eafnosupport(family: int) -> None:
    expected = errno_ret(errno.EAFNOSUPPORT)
    assert run_bpf(FILTER, seccomp.SYS_SOCKET, (family, 1, 0)) == expected
    assert run_bpf(FILTER, seccomp.SYS_SOCKETPAIR, (family, 1, 0, 0)) == expected


def test_filter_keeps_the_rest_of_the_policy() -> None:
    eperm = errno_ret(errno.EPERM)
    for nr in seccomp.BLOCKED_X86_64.values():
        assert run_bpf(FILTER, nr) == eperm
    assert run_bpf(FILTER, seccomp.SYS_CLONE3) == errno_ret(errno.ENOSYS)
    assert run_bpf(FILTER, seccomp.SYS_CLONE, (0x10000000 | 17,)) == eperm
    assert run_bpf(FILTER, seccomp.SYS_CLONE, (0x01200011,)) == ALLOW  # fork()'s flags
    assert run_bpf(FILTER, 0) == ALLOW  # read
    assert run_bpf(FILTER, 0x40000000 | 41) == KILL  # x32
    assert run_bpf(FILTER, 41, arch=0x40000003) == KILL  # i386
    # The old signature still works: a custom blocked list.
    custom = seccomp.build_filter({"getpid": 39})
    assert run_bpf(custom, 39) == errno_ret(errno.EPERM)
    assert run_bpf(custom, seccomp.SYS_SOCKET, (AF_VSOCK,)) == errno_ret(errno.EAFNOSUPPORT)


def profile_action(profile: dict[str, Any], name: str, arg0: int) -> tuple[str, int | None]:
    """What a Docker profile does with ``name(arg0, ...)`` for a capability-less x86-64 container.

    Evaluates the rules as runc and libseccomp do for disjoint rules: the
    conditions of one rule all hold; rules whose ``includes``/``excludes``
    name capabilities or architectures are judged for no capabilities on amd64.
    """
    ops: dict[str, Callable[[int, int, int], bool]] = {
        "SCMP_CMP_EQ": lambda a, v, _: a == v, "SCMP_CMP_NE": lambda a, v, _: a != v,
        "SCMP_CMP_GT": lambda a, v, _: a > v, "SCMP_CMP_MASKED_EQ": lambda a, v, w: a & v == w,
    }
    hits = []
    for rule in profile["syscalls"]:
        if name not in rule["names"]:
            continue
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("caps") or (inc.get("arches") and "amd64" not in inc["arches"]):
            continue
        if exc.get("arches") and "amd64" in exc["arches"]:
            continue
        args = rule.get("args") or []
        if all(ops[a["op"]](arg0, a["value"], a.get("valueTwo", 0)) for a in args):
            hits.append((rule["action"], rule.get("errnoRet")))
    assert len(set(hits)) <= 1, (name, arg0, hits)  # never two different verdicts
    return hits[0] if hits else (profile["defaultAction"], profile.get("defaultErrnoRet"))


def test_generated_docker_profile_renders_the_same_policy() -> None:
    profile = json.loads(json.dumps(seccomp_profile.generated_profile()))
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64"]
    refused = ("SCMP_ACT_ERRNO", errno.EAFNOSUPPORT)
    for call in ("socket", "socketpair"):
        for family in (1, 2, 10, 16):
            assert profile_action(profile, call, family) == ("SCMP_ACT_ALLOW", None)
        for family in (0, 3, 9, 11, 15, 17, AF_VSOCK, 2**32 - 1, 2**64 - 1):
            assert profile_action(profile, call, family) == refused, family
    for name in seccomp.BLOCKED_X86_64:
        assert profile_action(profile, name, 0) == ("SCMP_ACT_ERRNO", errno.EPERM)
    assert profile_action(profile, "clone3", 0) == ("SCMP_ACT_ERRNO", errno.ENOSYS)
    for flag in (0x00020000, 0x10000000, 0x40000000, 0x00000080):
        assert profile_action(profile, "clone", flag | 17) == ("SCMP_ACT_ERRNO", errno.EPERM)
    assert profile_action(profile, "clone", 0x01200011) == ("SCMP_ACT_ALLOW", None)


def test_docker_default_profile_gets_the_family_rule(tmp_path: Path) -> None:
    base = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read", "socket", "socketpair"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_X"]}},
        ],
    }
    path = tmp_path / "default.json"
    path.write_text(json.dumps(base))
    text, which = seccomp_profile.profile((tmp_path / "missing.json", path))
    assert which == "docker-default+families"
    profile = json.loads(text)
    assert profile_action(profile, "read", 0) == ("SCMP_ACT_ALLOW", None)
    assert profile_action(profile, "mount", 0) == ("SCMP_ACT_ERRNO", None)
    for call in ("socket", "socketpair"):
        assert profile_action(profile, call, 2) == ("SCMP_ACT_ALLOW", None)
        assert profile_action(profile, call, AF_VSOCK) == ("SCMP_ACT_ERRNO", errno.EAFNOSUPPORT)
        assert profile_action(profile, call, AF_PACKET) == ("SCMP_ACT_ERRNO", errno.EAFNOSUPPORT)


def test_without_a_docker_default_the_generated_profile_is_used(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}')  # not an allowlist
    text, which = seccomp_profile.profile((tmp_path / "missing.json", bad))
    assert which == "generated"
    assert json.loads(text) == seccomp_profile.generated_profile()


def test_dockers_own_default_profile_when_installed() -> None:
    base = seccomp_profile.docker_default_profile()
    if base is None:
        pytest.skip(f"no copy of Docker's default profile: {seccomp_profile.DEFAULT_PROFILE_PATHS}")
    profile = seccomp_profile.with_family_rule(base)
    refused = ("SCMP_ACT_ERRNO", errno.EAFNOSUPPORT)
    assert profile_action(profile, "socket", AF_VSOCK) == refused
    assert profile_action(profile, "socket", 10) == ("SCMP_ACT_ALLOW", None)
    assert profile_action(profile, "clone", 0x10000000 | 17)[0] == "SCMP_ACT_ERRNO"
    assert profile_action(profile, "clone3", 0) == ("SCMP_ACT_ERRNO", errno.ENOSYS)
    assert profile_action(profile, "mount", 0)[0] == "SCMP_ACT_ERRNO"
