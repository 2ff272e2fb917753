"""What a secret may be called and how much of it a call may carry.

A name is also a file name under ``/run/secrets`` in every sandbox, so it is
a single safe path component: no ``/``, no leading dot, nothing a shell or a
path join could read twice.
"""

from __future__ import annotations

import re

SECRET_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: The largest value one secret may hold.
MAX_SECRET_BYTES = 64 * 1024
#: The most secrets one function may list (and one call may carry).
MAX_SECRETS_PER_FUNCTION = 32
#: Where every tier shows a call's secrets, one read-only file per name.
SECRETS_DIR = "/run/secrets"


def check_secret_name(name: object) -> str:
    """``name`` if it is a valid secret name; ``ValueError`` (saying why) otherwise."""
    if not isinstance(name, str) or not SECRET_NAME_PATTERN.fullmatch(name):
        raise ValueError("a secret name is 1-64 of [A-Za-z0-9_-], starting with a letter "
                         "or digit")
    return name
