"""Entry names and symbolic link targets from a hostile archive: checked, split, and shown safely.

A name is accepted only as a relative path of UTF-8 components, none of
them ``..``; ``.`` and empty components (``./a``, ``a//b``, a folder's
trailing ``/``) are dropped. Control characters and backslashes are refused:
no honest bundle needs them, and a backslash is a Windows separator that
would otherwise become part of a file name. A symbolic link's target must be
relative and, resolved from the link's folder, stay inside the bundle.

Names are compared after Unicode NFC normalisation (``name_key``): two names
that differ only in how an accented letter is encoded look identical to a
person reviewing the bundle, so they count as duplicates. Case is *not*
folded: every tier runs Linux, whose file systems tell ``A`` from ``a``.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

from faas.bundles.limits import BundleLimits
from faas.errors import BundleRejected

SHOWN_CHARS = 80  # how much of a hostile name an error message repeats


def shown(name: str) -> str:
    """``name`` quoted for an error message: clipped, every unprintable character escaped.

    Undecodable bytes (surrogate escapes) show as ``\\xNN``; control, format
    and bidirectional-override characters as ``\\u{...}``, so a name can
    neither break a log line nor disguise itself.
    """
    out: list[str] = []
    for ch in name[:SHOWN_CHARS]:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\" or ch == "'":
            out.append("\\" + ch)
        elif not ch.isprintable():
            out.append(f"\\u{{{code:x}}}")
        else:
            out.append(ch)
    clipped = "..." if len(name) > SHOWN_CHARS else ""
    return "'" + "".join(out) + clipped + "'"


def rejected(name: str, problem: str) -> BundleRejected:
    """The error for entry ``name``: ``bundle entry 'name': problem``."""
    return BundleRejected(f"bundle entry {shown(name)}: {problem}")


def _check_text(name: str, text: str, what: str, limits: BundleLimits) -> None:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise rejected(name, f"{what} is not valid UTF-8") from None
    if size > limits.path_bytes:
        raise rejected(name, f"{what} is longer than {limits.path_bytes} bytes")
    if any(ch < " " or "\x7f" <= ch <= "\x9f" for ch in text):  # C0, DEL and C1
        raise rejected(name, f"{what} holds a control character")
    if "\\" in text:
        raise rejected(name, f"{what} holds a backslash (separate folders with '/')")


def entry_parts(name: str, limits: BundleLimits) -> tuple[str, ...]:
    """The path components of entry ``name``; ``()`` is the bundle's root itself."""
    _check_text(name, name, "the name", limits)
    if name.startswith("/"):
        raise rejected(name, "is an absolute name")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise rejected(name, "has a '..' component")
    if len(parts) > limits.depth:
        raise rejected(name, f"is nested deeper than {limits.depth} folders")
    for part in parts:
        if len(part.encode("utf-8")) > limits.name_bytes:
            raise rejected(name, f"has a component longer than {limits.name_bytes} bytes")
    return parts


class LinkTarget(NamedTuple):
    """Where a link points (``resolved``) and the folders its target passes through."""

    resolved: tuple[str, ...]
    through: tuple[tuple[str, ...], ...]


def link_target(name: str, parts: tuple[str, ...], target: str,
                limits: BundleLimits) -> LinkTarget:
    """Resolve the link ``parts`` (entry ``name``) lexically from the link's folder.

    A target that is absolute or climbs above the root is refused. Lexical
    resolution equals the kernel's only if no folder passed through is
    itself a link (``d/..`` climbs from wherever ``d`` points):
    ``TreeIndex.check_link`` makes sure of that once every entry is known.
    The link's own folder and those above it are real folders (no entry may
    lie inside a link), so climbing from them with ``..`` is exact.
    """
    _check_text(name, target, "the link target", limits)
    if not target:
        raise rejected(name, "is a symbolic link with an empty target")
    if target.startswith("/"):
        raise rejected(name, "is a symbolic link to an absolute path, outside the bundle")
    resolved = list(parts[:-1])
    through: list[tuple[str, ...]] = []
    descended = False
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if descended:
            through.append(tuple(resolved))
        if part != "..":
            resolved.append(part)
            descended = True
        elif resolved:
            resolved.pop()
        else:
            raise rejected(name, "is a symbolic link that points outside the bundle")
    return LinkTarget(tuple(resolved), tuple(through))


def name_key(parts: tuple[str, ...]) -> str:
    """The name two entries are compared by (NFC-normalised; see the module docstring)."""
    return unicodedata.normalize("NFC", "/".join(parts))
