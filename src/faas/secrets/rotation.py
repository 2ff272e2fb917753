"""Re-encrypting every secret under a new master key (``faas admin rotate-secret-key``).

With the key file, crash-safe in three steps, under ``secret.key.lock``:

1. the new key is written to ``secret.key.new`` (0600, fsynced);
2. every row is re-sealed under it in ONE transaction;
3. ``secret.key.new`` is renamed over ``secret.key``.

A crash before 2 commits leaves rows under the old key and a stray new
file; one after leaves rows under the new key and the file not yet renamed.
Either way the next ``MasterKey.load`` reads the rows' key ids and finishes
or discards (``cipher.resolve_pending``). Servers running meanwhile load the
key again when they meet a row under the new key (``Secrets._reload``).

With ``FAAS_SECRET_KEY`` the operator brings the new key (a file holding its
base64) and sets the variable to it afterwards; step 2 is all there is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from faas.config import Settings
from faas.errors import ValidationError
from faas.secrets.cipher import (
    NEW_KEY_FILE,
    MasterKey,
    Sealed,
    SecretUnreadable,
    commit_pending,
    resolve_pending,
    rotation_lock,
    write_pending,
)
from faas.store import Store
from faas.store.secret_store import Reseal, SealedRow

#: Largest --new-key-file read (base64 of 32 bytes and a newline fit many times over).
MAX_KEY_FILE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Rotation:
    old_key_id: str
    new_key_id: str
    rows: int
    #: the key came from FAAS_SECRET_KEY: the operator must now set it to the new key
    from_env: bool


def read_new_key(path: Path) -> MasterKey:
    """The key in ``--new-key-file``: its base64, as FAAS_SECRET_KEY takes it."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ValidationError(f"--new-key-file cannot be read ({type(exc).__name__})") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    return MasterKey.from_base64(text, "--new-key-file")


def resealer(old: MasterKey, new: MasterKey) -> Reseal:
    """Open each row under ``old`` and seal it under ``new`` (rows under ``new`` stay)."""
    def reseal(row: SealedRow) -> tuple[bytes, bytes, str] | None:
        if row.key_id == new.key_id:
            return None  # already under the new key
        value = old.open(row.tenant, row.name, Sealed(row.ciphertext, row.nonce, row.key_id))
        sealed = new.seal(row.tenant, row.name, value)
        return sealed.ciphertext, sealed.nonce, sealed.key_id
    return reseal


async def rotate_master_key(settings: Settings, store: Store,
                            new_key: MasterKey | None = None,
                            actor: str | None = "admin") -> Rotation:
    """Re-seal every secret under ``new_key`` (a random one if None, key file only)."""
    if settings.tenancy.secret_key:
        if new_key is None:
            raise ValidationError("FAAS_SECRET_KEY is set: give the new key with "
                                  "--new-key-file (its base64)")
        old = MasterKey.from_base64(settings.tenancy.secret_key)
        if new_key.key_id == old.key_id:
            raise ValidationError("the new key is the current one")
        rows = await store.secrets.rotate(resealer(old, new_key), actor)
        return Rotation(old.key_id, new_key.key_id, rows, True)
    new = new_key or MasterKey.generate()
    data_dir = settings.data_dir
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with rotation_lock(data_dir, wait=False):  # never waits: a second rotation is refused
        # An earlier rotation cut short is settled first (load would take the lock again).
        await asyncio.to_thread(resolve_pending, data_dir, await store.secrets.key_ids())
        old = await asyncio.to_thread(MasterKey.load, settings)
        if new.key_id == old.key_id:
            raise ValidationError("the new key is the current one")
        await asyncio.to_thread(write_pending, data_dir, new)
        try:
            rows = await store.secrets.rotate(resealer(old, new), actor)
        except SecretUnreadable:
            # Refused before the commit, for certain: no row uses the new key. (On any
            # other error the commit may have happened; the next load decides.)
            (data_dir / NEW_KEY_FILE).unlink()
            raise
        await asyncio.to_thread(commit_pending, data_dir)
    return Rotation(old.key_id, new.key_id, rows, False)


__all__ = ["Rotation", "read_new_key", "rotate_master_key"]
