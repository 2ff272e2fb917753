"""Private key files in the data folder: created 0600 once, refused when others could read them.

Both the callback signing key (``callback.key``) and the secrets' master key
(``secret.key``) live in such a file. ``read_key_file`` opens without
following a symbolic link and refuses anything but a regular file of the
expected size, owned by this user, with no group or other permission bits.
``create_key_file`` writes a private scratch file and links it into place, so
nobody ever reads a half-written key and, of processes that race, exactly one
wins (the others get ``FileExistsError`` and read the winner's). Errors name
the file, never its folder or its contents.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from faas.errors import StoreUnavailable


def read_key_file(path: Path, size: int) -> bytes:
    """The file's ``size`` bytes; ``FileNotFoundError`` if there is none, else
    ``StoreUnavailable`` saying what is wrong with it."""
    name = path.name
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreUnavailable(f"{name} is a symbolic link") from None
        raise StoreUnavailable(f"{name} cannot be opened ({type(exc).__name__})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StoreUnavailable(f"{name} is not a regular file")
        if info.st_uid != os.geteuid():
            raise StoreUnavailable(f"{name} is not owned by the user faas runs as")
        if info.st_mode & 0o077:
            raise StoreUnavailable(f"{name} is readable or writable by group or others "
                                   f"(make it mode 0600)")
        key = os.read(fd, size + 1)
    except OSError as exc:
        raise StoreUnavailable(f"{name} cannot be read ({type(exc).__name__})") from None
    finally:
        os.close(fd)
    if len(key) != size:
        raise StoreUnavailable(f"{name} does not hold exactly {size} bytes")
    return key


def create_key_file(path: Path, key: bytes) -> None:
    """Write ``key`` to ``path`` (mode 0600, fsynced); ``FileExistsError`` if it exists."""
    name = path.name
    scratch = path.with_name(f".{name}.{os.getpid()}.{os.urandom(8).hex()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(scratch, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)  # past any umask or default ACL
            if os.write(fd, key) != len(key):
                raise OSError(errno.EIO, "short write")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(scratch, path, follow_symlinks=False)
        finally:
            scratch.unlink()
        sync_folder(path.parent)
    except FileExistsError:
        raise  # only os.link raises it: the scratch name is random
    except OSError as exc:
        raise StoreUnavailable(f"{name} cannot be created ({type(exc).__name__})") from None


def load_or_create_key_file(path: Path, size: int) -> bytes:
    """The key in ``path``, made of ``size`` random bytes on first use."""
    try:
        return read_key_file(path, size)
    except FileNotFoundError:
        pass
    key = os.urandom(size)
    try:
        create_key_file(path, key)
    except FileExistsError:
        return read_key_file(path, size)  # another process created it first
    return key


def sync_folder(folder: Path) -> None:
    """Make a rename or link in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
