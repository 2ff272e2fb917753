"""API key material: made at random, shown once, stored only as a hash.

A key is ``faas_<id>_<secret>``: ``id`` (12 hex digits) names the key in
lists, logs and the audit log and is not secret; ``secret`` is 256 random
bits (43 characters of URL-safe base64). The store keeps SHA-256 of the
whole key: a key carries 256 bits of entropy, so a slow password hash would
add nothing but time on every request. A presented key is looked up by that
hash, and the lookup's answer compared again with ``hmac.compare_digest``:
how far a wrong key matched a real one changes neither the work done nor its
timing (its hash shares nothing with the real one's).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass

PREFIX = "faas_"
KEY_PATTERN = re.compile(r"faas_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{12}")
#: The longest Authorization header value looked at (longer: a bad key, no hashing).
MAX_PRESENTED_CHARS = 256


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    #: the whole key, shown once to whoever made it and never stored
    key: str
    key_hash: bytes


def new_key() -> NewKey:
    key_id = secrets.token_hex(6)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    key = f"{PREFIX}{key_id}_{secret}"
    return NewKey(key_id, key, hash_key(key))


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def presented_key(authorization: str | None) -> str | None:
    """The key in an ``Authorization: Bearer <key>`` header; None if absent or malformed."""
    if authorization is None or len(authorization) > MAX_PRESENTED_CHARS:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not KEY_PATTERN.fullmatch(key):
        return None
    return key
