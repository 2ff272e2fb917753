"""The tree an archive describes, checked entry by entry for clashes before anything is written.

Refused: two entries with the same name (after NFC normalisation, see
``faas.bundles.names``), a file and a folder of the same name (``a`` then
``a/b``, in either order), any entry inside a symbolic link (``a -> ..``
then ``a/x``: writing ``a/x`` would write through the link), and a link whose
target passes through another link. A folder may be named both by an
explicit entry and implicitly by the entries inside it, in either order
(zip writers differ in whether and when they list folders).
"""

from __future__ import annotations

import enum

from faas.bundles.names import name_key, rejected


class Kind(enum.Enum):
    FILE = "file"
    DIR = "folder"
    SYMLINK = "symbolic link"


class TreeIndex:
    """Every path an archive has named so far, with its kind."""

    def __init__(self) -> None:
        self._kinds: dict[str, Kind] = {}
        self._explicit: set[str] = set()
        self._spelled: dict[str, str] = {}

    def add(self, name: str, parts: tuple[str, ...], kind: Kind) -> None:
        """Record entry ``name`` (components ``parts``); raise ``BundleRejected`` on a clash."""
        if not parts:
            if kind is not Kind.DIR:
                raise rejected(name, f"names the bundle's root but is a {kind.value}")
            return
        for depth in range(1, len(parts)):
            key = name_key(parts[:depth])
            above = self._kinds.setdefault(key, Kind.DIR)
            if above is Kind.SYMLINK:
                raise rejected(name, "lies inside a symbolic link")
            if above is Kind.FILE:
                raise rejected(name, "lies inside a file (a file and a folder share a name)")
            self._same_spelling(name, key, "/".join(parts[:depth]))
        key = name_key(parts)
        seen = self._kinds.get(key)
        if seen is not None:
            if kind is Kind.DIR and seen is Kind.DIR and key not in self._explicit:
                self._same_spelling(name, key, "/".join(parts))
                self._explicit.add(key)
                return
            if seen is not kind:
                raise rejected(name, f"is a {kind.value}, but a {seen.value} of that name "
                                     "is already in the bundle")
            self._same_spelling(name, key, "/".join(parts))
            raise rejected(name, "appears twice in the archive")
        self._kinds[key] = kind
        self._explicit.add(key)
        self._spelled[key] = "/".join(parts)

    def _same_spelling(self, name: str, key: str, spelled: str) -> None:
        """Refuse a second spelling of a known path (equal only after NFC normalisation)."""
        if self._spelled.setdefault(key, spelled) != spelled:
            raise rejected(name, "has the same name as another entry after Unicode "
                                 "normalisation (NFC)")

    def check_link(self, name: str, through: tuple[tuple[str, ...], ...]) -> None:
        """Refuse a link whose target passes through another link (``through``: the folders
        its target walks through, from ``names.link_target``). Call once every entry is known.

        The target itself may be a link: that one was checked on its own.
        """
        for folder in through:
            if self._kinds.get(name_key(folder)) is Kind.SYMLINK:
                raise rejected(name, "is a symbolic link whose target passes through "
                                     "another symbolic link")
