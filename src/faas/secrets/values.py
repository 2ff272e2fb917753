"""One call's secrets as the executors get them: names and values, never printed.

``Secret`` is what ``ExecutionSpec.secrets`` holds. Its ``repr`` (and so
``str``, a spec's ``repr`` and any log line built from either) shows the name
and the value's length only. ``check_secrets`` is the one check a call's
secrets pass before any tier sees them (``ExecutionSpec`` runs it), so every
tier may take a name as a safe file name under ``SECRETS_DIR`` and a value as
at most ``MAX_SECRET_BYTES``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from faas.errors import ValidationError
from faas.secrets.names import MAX_SECRET_BYTES, MAX_SECRETS_PER_FUNCTION, check_secret_name

__all__ = ["Secret", "check_secrets", "secrets_bytes"]


@dataclass(frozen=True, slots=True, repr=False)
class Secret:
    """One secret of one call: shown as ``/run/secrets/<name>`` holding ``value``."""

    name: str
    value: bytes

    def __repr__(self) -> str:
        return f"Secret(name={self.name!r}, value=<{len(self.value)} bytes>)"


def check_secrets(secrets: Iterable[Secret]) -> tuple[Secret, ...]:
    """``secrets`` as a tuple if every tier can show them; ``ValidationError`` otherwise.

    Each name matches ``SECRET_NAME_PATTERN`` and appears once; at most
    ``MAX_SECRETS_PER_FUNCTION`` of them; each value is bytes of at most
    ``MAX_SECRET_BYTES``. Messages name the secret, never its value.
    """
    checked = tuple(secrets)
    if len(checked) > MAX_SECRETS_PER_FUNCTION:
        raise ValidationError(f"a call may carry at most {MAX_SECRETS_PER_FUNCTION} secrets, "
                              f"not {len(checked)}")
    seen: set[str] = set()
    for index, secret in enumerate(checked):
        if not isinstance(secret, Secret):
            raise ValidationError(f"secrets[{index}] is not a Secret")
        try:
            name = check_secret_name(secret.name)
        except ValueError as exc:
            raise ValidationError(f"secrets[{index}]: {exc}") from None
        if name in seen:
            raise ValidationError(f"secret {name!r} is given twice")
        seen.add(name)
        if not isinstance(secret.value, bytes):
            raise ValidationError(f"secret {name!r}: the value must be bytes")
        if len(secret.value) > MAX_SECRET_BYTES:
            raise ValidationError(f"secret {name!r} holds {len(secret.value)} bytes; at most "
                                  f"{MAX_SECRET_BYTES} are allowed")
    return checked


def secrets_bytes(secrets: Iterable[Secret]) -> int:
    """How many bytes a tmpfs holding ``secrets`` needs: each file rounded up to a page,
    plus a page for the folder (the size bound every tier gives its secrets tmpfs)."""
    page = 4096
    return page + sum(max(page, -(-len(s.value) // page) * page) for s in secrets)
