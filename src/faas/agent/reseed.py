"""After a snapshot restore: give the guest fresh randomness and the right time.

Every VM restored from one snapshot starts with the same kernel CRNG state,
so the host's PING carries fresh random bytes. ``reseed`` credits them to the
kernel pool (``RNDADDENTROPY``) and forces a CRNG reseed (``RNDRESEEDCRNG``),
which also invalidates the per-CPU batches, so ``getrandom()`` in every
process started afterwards (the user's command, Python's ``random`` and
``os.urandom``) diverges from the other restored VMs. Both ioctls need root
(the agent is root; the commands are not). Without them (not root, not
Linux: the ``--stdio`` tests) the bytes are written to ``/dev/urandom``, which
mixes without crediting or reseeding.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import time

log = logging.getLogger("faas.agent")

RNDADDENTROPY = 0x40085203
RNDRESEEDCRNG = 0x5207


def reseed(entropy: bytes) -> bool:
    """Mix ``entropy`` into the kernel pool and reseed; True if the CRNG was reseeded."""
    if not entropy:
        return False
    try:
        fd = os.open("/dev/urandom", os.O_WRONLY)
    except OSError as exc:
        log.warning("cannot open /dev/urandom: %s", exc)
        return False
    try:
        try:
            fcntl.ioctl(fd, RNDADDENTROPY,
                        struct.pack("ii", len(entropy) * 8, len(entropy)) + entropy)
            fcntl.ioctl(fd, RNDRESEEDCRNG)
            return True
        except OSError:
            os.write(fd, entropy)
            return False
    finally:
        os.close(fd)


def set_clock(now: float) -> None:
    """Step the wall clock to the host's (a restored guest wakes at snapshot time)."""
    with contextlib.suppress(OSError, ValueError):
        if abs(time.time() - now) > 0.5:
            time.clock_settime(time.CLOCK_REALTIME, now)
