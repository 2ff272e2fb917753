"""The secrets' master key and how a value is sealed under it (AES-256-GCM).

The key is ``FAAS_SECRET_KEY`` (base64 of exactly 32 bytes) or else
``<data_dir>/secret.key`` (32 random bytes, made 0600 on first start and
refused when group or others could read it or another user owns it:
``faas.keyfile``). Each value gets a fresh 12-byte random nonce, and the
associated data is ``tenant \\0 name``: a ciphertext copied to another row
or tenant fails to open. Every row records ``key_id``, a fingerprint of the
key that sealed it, so a row sealed under another key is named as such
rather than reported as corrupt.

Rotation (``faas.secrets.rotation``) writes the next key to
``secret.key.new`` before re-encrypting the rows in one transaction and
renames it over ``secret.key`` afterwards. ``MasterKey.load`` finishes or
discards a rotation that stopped half-way, decided by the rows' key ids.
Rotations and that decision hold ``secret.key.lock`` (``flock``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from faas.config import Settings
from faas.errors import FaasError, StoreUnavailable, ValidationError
from faas.keyfile import create_key_file, load_or_create_key_file, read_key_file, sync_folder

KEY_FILE = "secret.key"
NEW_KEY_FILE = "secret.key.new"
LOCK_FILE = "secret.key.lock"
KEY_BYTES = 32
NONCE_BYTES = 12
ENV_VAR = "FAAS_SECRET_KEY"
_KEY_ID_LABEL = b"faas secrets master key id v1\x00"


class SecretUnreadable(FaasError):
    """A stored secret cannot be opened: sealed under another key, or altered."""

    status = 500


@dataclass(frozen=True, slots=True)
class Sealed:
    ciphertext: bytes
    nonce: bytes
    key_id: str


def key_id_of(key: bytes) -> str:
    """A short public fingerprint of ``key`` (16 hex digits; reveals nothing of it)."""
    return hashlib.sha256(_KEY_ID_LABEL + key).hexdigest()[:16]


def _aad(tenant: str, name: str) -> bytes:
    return tenant.encode() + b"\x00" + name.encode()


class MasterKey:
    """One AES-256-GCM key and its ``key_id``; its bytes are never shown."""

    __slots__ = ("_aead", "_key", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValidationError(f"a master key is exactly {KEY_BYTES} bytes")
        self._key = bytes(key)
        self._aead = AESGCM(self._key)
        self.key_id = key_id_of(self._key)

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def from_base64(cls, text: str, source: str = ENV_VAR) -> MasterKey:
        """The key in ``text``; ``ValidationError`` naming ``source``, never the text."""
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != KEY_BYTES:
            raise ValidationError(f"{source} must be the base64 of exactly {KEY_BYTES} random "
                                  f"bytes (head -c 32 /dev/urandom | base64)")
        return cls(raw)

    def to_base64(self) -> str:
        """The key as ``FAAS_SECRET_KEY`` takes it (for the operator, at rotation)."""
        return base64.b64encode(self._key).decode()

    def raw(self) -> bytes:
        return self._key

    def seal(self, tenant: str, name: str, value: bytes) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        return Sealed(self._aead.encrypt(nonce, value, _aad(tenant, name)), nonce, self.key_id)

    def open(self, tenant: str, name: str, sealed: Sealed) -> bytes:
        """The value; ``SecretUnreadable`` (naming the secret, never its bytes) otherwise."""
        if sealed.key_id != self.key_id:
            raise SecretUnreadable(
                f"secret {name!r} is sealed under master key {sealed.key_id}, not the current "
                f"{self.key_id}: was the key rotated without this server seeing it?")
        try:
            return self._aead.decrypt(sealed.nonce, sealed.ciphertext, _aad(tenant, name))
        except InvalidTag:
            raise SecretUnreadable(f"secret {name!r} does not open under its key: it was "
                                   "altered or moved") from None

    @classmethod
    def load(cls, settings: Settings, key_ids_in_use: Collection[str] = ()) -> MasterKey:
        """``FAAS_SECRET_KEY``, or the key file (made on first use).

        ``key_ids_in_use``: the key ids the stored rows carry; they decide a
        rotation that stopped half-way (see ``resolve_pending``).
        """
        if settings.tenancy.secret_key:
            return cls.from_base64(settings.tenancy.secret_key)
        data_dir = settings.data_dir
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (data_dir / NEW_KEY_FILE).exists() or (data_dir / NEW_KEY_FILE).is_symlink():
            with rotation_lock(data_dir):
                resolve_pending(data_dir, key_ids_in_use)
        return cls(load_or_create_key_file(data_dir / KEY_FILE, KEY_BYTES))


@contextlib.contextmanager
def rotation_lock(data_dir: Path, wait: bool = True) -> Iterator[None]:
    """Hold ``secret.key.lock``; ``wait=False``: ``StoreUnavailable`` if someone else does."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(data_dir / LOCK_FILE, flags, 0o600)
    except OSError as exc:
        raise StoreUnavailable(f"{LOCK_FILE} cannot be opened ({type(exc).__name__})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise StoreUnavailable("another master key rotation is running") from None
        yield
    finally:
        os.close(fd)


def resolve_pending(data_dir: Path, key_ids_in_use: Collection[str]) -> None:
    """Finish or discard a rotation that stopped between writing ``secret.key.new`` and
    renaming it (call with the rotation lock held).

    The rows say which key is current: they were re-encrypted in one
    transaction, so if any carries the new key's id that transaction
    committed and the new key replaces the old one; otherwise it never did
    and the new key is thrown away.
    """
    new_path, path = data_dir / NEW_KEY_FILE, data_dir / KEY_FILE
    try:
        new_key = read_key_file(new_path, KEY_BYTES)
    except FileNotFoundError:
        return  # another process resolved it meanwhile
    if key_id_of(new_key) in key_ids_in_use or not (path.exists() or path.is_symlink()):
        new_path.replace(path)
    else:
        new_path.unlink()
    sync_folder(data_dir)


def write_pending(data_dir: Path, key: MasterKey) -> None:
    """Write the next key to ``secret.key.new`` (0600) before any row uses it."""
    create_key_file(data_dir / NEW_KEY_FILE, key.raw())


def commit_pending(data_dir: Path) -> None:
    """Make ``secret.key.new`` the key (after the rows were re-encrypted under it)."""
    (data_dir / NEW_KEY_FILE).replace(data_dir / KEY_FILE)
    sync_folder(data_dir)
