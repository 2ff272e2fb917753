"""What a bundle may be (the limits an upload is checked against) and what a stored one is."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

MiB = 1024 * 1024


@dataclass(frozen=True)
class BundleLimits:
    """Limits on one bundle; the defaults follow Lambda (50 MiB zipped, 250 MiB unzipped).

    ``entries`` counts every entry of the archive: files, folders and
    symbolic links. ``path_bytes`` and ``name_bytes`` are UTF-8 bytes of a
    whole entry name and of one of its components (255 is Linux's NAME_MAX);
    ``depth`` is the number of components.
    """

    packed_bytes: int = 50 * MiB
    unpacked_bytes: int = 250 * MiB
    entries: int = 20_000
    depth: int = 64
    path_bytes: int = 1024
    name_bytes: int = 255

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"bundle limit {field.name} must be a positive integer, "
                                 f"not {value!r}")


@dataclass(frozen=True)
class BundleInfo:
    """A stored (or packed) bundle: its content address and sizes.

    ``sha256`` is the hex digest of the packed archive exactly as uploaded;
    ``files`` counts regular files only (not folders or links).
    """

    sha256: str
    packed_bytes: int
    unpacked_bytes: int
    files: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BundleInfo:
        data = json.loads(text)
        return cls(sha256=str(data["sha256"]), packed_bytes=int(data["packed_bytes"]),
                   unpacked_bytes=int(data["unpacked_bytes"]), files=int(data["files"]))
