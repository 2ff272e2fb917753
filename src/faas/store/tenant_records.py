"""What the store keeps of tenants, API keys and the audit log, as plain records."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from faas.errors import ValidationError

#: The most audit entries one page holds.
MAX_AUDIT_PAGE = 200
#: What an audit entry's free text is cut to.
MAX_AUDIT_DETAIL = 500


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    created_at: int
    #: overrides of the server's default quotas (``faas.tenancy.quotas``)
    quotas: MappingProxyType[str, Any]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as stored: never the key, only its hash."""

    id: str
    tenant: str
    role: str
    name: str
    key_hash: bytes
    created_at: int
    expires_at: int | None = None
    revoked_at: int | None = None
    created_by: str | None = None

    def usable(self, now_us: int) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now_us < self.expires_at)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    at: int
    tenant: str
    #: the key that acted (None: the server ran open, or the admin CLI)
    actor: str | None
    #: e.g. ``key.create``, ``function.deploy``, ``secret.delete``
    action: str
    target: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    items: tuple[AuditEntry, ...]
    next_cursor: str | None


def encode_audit_cursor(at: int, entry_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at}:{entry_id}".encode()).decode().rstrip("=")


def decode_audit_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        when, _, entry_id = raw.partition(":")
        if not when.isdigit() or len(when) > 19 or len(entry_id) != 32:
            raise ValueError(when)
        int(entry_id, 16)
        return int(when), entry_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError("cursor is not one this server handed out") from None
