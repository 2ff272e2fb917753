"""Who is calling: a tenant, a role, and the key that proved it.

Everything a tenant owns is found through its name. Functions are stored
under a *qualified* id, ``<tenant>/<name>`` (OpenWhisk's namespaces do the
same): the gateway qualifies every id it is given with the caller's tenant
before it touches the store, so an id of another tenant is simply an id that
does not exist, and views strip the prefix again. Tenant names cannot hold a
``/`` and function names cannot either, so the split is unambiguous.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
#: The tenant of a server that runs open (no keys) and of everything made before tenants.
DEFAULT_TENANT = "default"
SEPARATOR = "/"


class Role(enum.IntEnum):
    """Each role may do what the ones below it may."""

    INVOKER = 1
    DEVELOPER = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, raw: object) -> Role:
        """The role named ``raw`` ("invoker", "developer", "admin"); ``ValueError`` else."""
        if isinstance(raw, str) and raw.upper() in cls.__members__:
            return cls[raw.upper()]
        raise ValueError("role must be one of invoker, developer, admin")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request."""

    tenant: str
    role: Role
    #: the API key's id (None: the server runs open, without keys)
    key_id: str | None = None

    def may(self, role: Role) -> bool:
        return self.role >= role


#: Who calls a server that runs open: an admin of the default tenant.
OPEN = Principal(DEFAULT_TENANT, Role.ADMIN, None)


def check_tenant(name: object) -> str:
    """``name`` if it is a valid tenant name; ``ValueError`` otherwise."""
    if not isinstance(name, str) or not TENANT_PATTERN.fullmatch(name):
        raise ValueError("a tenant name is 1-32 of [a-z0-9-], starting with a letter or digit")
    return name


def qualify(tenant: str, name: str) -> str:
    """The stored id of function ``name`` of ``tenant``."""
    return f"{tenant}{SEPARATOR}{name}"


def unqualify(qualified: str) -> str:
    """The name a tenant knows a stored id by (an unqualified id is returned as it is)."""
    return qualified.partition(SEPARATOR)[2] or qualified


def tenant_of(qualified: str) -> str | None:
    """The tenant part of a stored id (None for an unqualified one)."""
    tenant, separator, _ = qualified.partition(SEPARATOR)
    return tenant if separator else None


def is_loopback(host: str) -> bool:
    """Whether a bind address reaches only this machine (``localhost``, 127/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
