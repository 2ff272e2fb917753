"""A classic-BPF seccomp filter for the namespace sandbox, built without libseccomp.

Policy: allow by default, fail with EPERM the system calls an untrusted
command has no business making (tracing other processes, mounting, the kernel
keyring, BPF, perf, loading kernels or modules, creating or entering
namespaces, io_uring, clock and swap changes, ...), answer ``clone3`` with
ENOSYS so libc falls back to ``clone`` (whose flags a filter can inspect), and
refuse ``clone`` with any CLONE_NEW* flag, and refuse ``socket``/``socketpair``
for every address family but unix, inet, inet6 and netlink with EAFNOSUPPORT
(AF_VSOCK and friends are not confined by a network namespace: "no network"
would not hold). A system call from a foreign ABI (x32, or a non-x86-64
architecture) kills the process.

The policy is declarative (``BLOCKED_X86_64``, ``CLONE_NEW_MASK``,
``SYS_CLONE3``, ``ALLOWED_SOCKET_FAMILIES``); this module renders it as a
classic-BPF program, ``faas.executors.docker.seccomp_profile`` renders the same
policy as a Docker seccomp profile.

bubblewrap loads the program (``--seccomp FD``) right before it executes the
command, after its own mounts are done.
"""

from __future__ import annotations

import errno
import platform
import struct

# struct seccomp_data offsets
_NR, _ARCH, _ARG0 = 0, 4, 16
# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000

# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
CLONE_NEW_MASK = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000 | 0x00000080

SYS_CLONE = 56
SYS_CLONE3 = 435
SYS_SOCKET = 41
SYS_SOCKETPAIR = 53

#: Address families ``socket``/``socketpair`` may name (arg0, read as the
#: kernel does: a 32-bit int); any other fails with EAFNOSUPPORT.
ALLOWED_SOCKET_FAMILIES: dict[str, int] = {
    "AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16,
}

#: x86-64 system calls refused with EPERM, by name (the numbers are the ABI's).
BLOCKED_X86_64: dict[str, int] = {
    "ptrace": 101, "syslog": 103, "uselib": 134, "adjtimex": 159, "chroot": 161,
    "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167,
    "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173, "init_module": 175,
    "delete_module": 176, "quotactl": 179, "nfsservctl": 180, "pivot_root": 155,
    "vhangup": 153, "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
    "perf_event_open": 298, "fanotify_init": 300, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def supported() -> tuple[bool, str]:
    machine = platform.machine()
    if machine != "x86_64":
        return False, f"the seccomp filter is defined for x86_64 only, not {machine}"
    return True, "x86_64 filter"


def build_filter(
    blocked: dict[str, int] | None = None, *, families: dict[str, int] | None = None,
) -> bytes:
    """The filter program as bytes of ``struct sock_filter``, ready for ``--seccomp``."""
    numbers = sorted(set((blocked or BLOCKED_X86_64).values()))
    allowed = sorted(set((families or ALLOWED_SOCKET_FAMILIES).values()))
    k = len(allowed)
    eperm = _RET_ERRNO | errno.EPERM
    prog = [
        _insn(_LD_W_ABS, 0, 0, _ARCH),
        _insn(_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        _insn(_RET_K, 0, 0, _RET_KILL_PROCESS),
        _insn(_LD_W_ABS, 0, 0, _NR),
        _insn(_JGE_K, 0, 1, _X32_SYSCALL_BIT),
        _insn(_RET_K, 0, 0, _RET_KILL_PROCESS),
        _insn(_JEQ_K, 0, 1, SYS_CLONE3),
        _insn(_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS),
    ]
    for nr in numbers:
        prog += [_insn(_JEQ_K, 0, 1, nr), _insn(_RET_K, 0, 0, eperm)]
    prog += [
        _insn(_JEQ_K, 0, 4, SYS_CLONE),
        _insn(_LD_W_ABS, 0, 0, _ARG0),  # low 32 bits of the flags (little-endian)
        _insn(_JSET_K, 0, 1, CLONE_NEW_MASK),
        _insn(_RET_K, 0, 0, eperm),
        _insn(_RET_K, 0, 0, _RET_ALLOW),
        # socket(2) and socketpair(2): the family is arg0, an int (its low 32 bits).
        _insn(_JEQ_K, 1, 0, SYS_SOCKET),
        _insn(_JEQ_K, 0, k + 3, SYS_SOCKETPAIR),
        _insn(_LD_W_ABS, 0, 0, _ARG0),
    ]
    prog += [_insn(_JEQ_K, k - i, 0, family) for i, family in enumerate(allowed)]
    prog += [
        _insn(_RET_K, 0, 0, _RET_ERRNO | errno.EAFNOSUPPORT),
        _insn(_RET_K, 0, 0, _RET_ALLOW),
        _insn(_RET_K, 0, 0, _RET_ALLOW),
    ]
    return b"".join(prog)
