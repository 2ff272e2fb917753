"""``faas.toml``: a function folder's deploy settings, read with ``tomllib``.

One table, ``[function]``; every key is optional in the file (flags of
``faas deploy`` may supply or override any of them) and none other is
accepted, so a typo is an error rather than a silently ignored setting::

    [function]
    name = "hello"                      # the function id; default: the folder's name
    command = ["python3", "/function/handler.py"]   # argv; the bundle is at /function
    executor = "sandbox"                # default: the server's
    image = "python:3.12"               # docker tier only
    timeout_s = 10                      # seconds (a number)
    memory_mb = 128                     # integers
    vcpus = 1
    max_concurrency = 4
    description = "says hello"
    content_type = "application/json"   # what POST /function/{id} answers with
    exclude = ["tests", "*.md"]         # globs left out of the bundle, besides the defaults
    secrets = ["db-password"]           # the tenant's secrets, files under /run/secrets

    [function.labels]
    team = "web"

    [function.env]                      # sent as the spec's env_vars; not for secrets
    GREETING = "hello"

An ``exclude`` glob without ``/`` matches a file or folder name at any depth
(``*.md``, ``tests``); one with ``/`` matches the path from the folder
(``docs/*.png``). An excluded folder is left out whole. ``DEFAULT_EXCLUDE``
is always left out: version control, caches, virtual environments (their
links point outside the folder, which a bundle may not) and ``faas.toml``
itself (its settings travel as the spec, so changing only them keeps the
bundle's sha256).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faas.errors import ValidationError

MANIFEST_NAME = "faas.toml"
DEFAULT_EXCLUDE = (".git", ".hg", ".svn", "__pycache__", "*.pyc", ".venv", "venv",
                   MANIFEST_NAME)

_STRINGS = ("name", "executor", "image", "description", "content_type")
_POSITIVE_INTS = ("memory_mb", "vcpus", "max_concurrency")
_TABLES = {"labels": "labels", "env": "env_vars"}
KEYS = frozenset((*_STRINGS, *_POSITIVE_INTS, *_TABLES, "command", "timeout_s", "exclude",
                  "secrets"))


@dataclass(frozen=True)
class Manifest:
    """What a ``faas.toml`` says: the function's name, its spec keys, bundle excludes."""

    name: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()


def load_manifest(folder: Path) -> Manifest:
    """``folder/faas.toml``, checked; an empty ``Manifest`` when there is none."""
    path = folder / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Manifest()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{path}: cannot be read ({exc})") from None
    return parse_manifest(text, str(path))


def parse_manifest(text: str, where: str = MANIFEST_NAME) -> Manifest:
    """Parse and check a ``faas.toml``; every problem is named in one ``ValidationError``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{where}: not valid TOML: {exc}") from None
    problems = [f"unknown table or key {key!r} (only [function])"
                for key in data if key != "function"]
    table = data.get("function", {})
    if not isinstance(table, dict):
        problems.append("function: must be a table ([function])")
        table = {}
    problems += [f"function.{key}: unknown key (known: {', '.join(sorted(KEYS))})"
                 for key in table if key not in KEYS]
    spec: dict[str, Any] = {}
    name: str | None = None
    exclude: tuple[str, ...] = ()
    for key, value in table.items():
        if key not in KEYS:
            continue
        problem = _problem(key, value)
        if problem:
            problems.append(f"function.{key}: {problem}")
        elif key == "name":
            name = value
        elif key == "exclude":
            exclude = tuple(value)
        else:
            spec[_TABLES.get(key, key)] = dict(value) if key in _TABLES else value
    if problems:
        raise ValidationError(f"{where}: " + "; ".join(problems))
    return Manifest(name, spec, exclude)


def _problem(key: str, value: Any) -> str | None:
    """Why ``value`` is not valid for ``key`` (None: it is)."""
    if key in _STRINGS:
        return None if isinstance(value, str) and value else "must be a non-empty string"
    if key in _POSITIVE_INTS:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        return None if ok else "must be an integer >= 1"
    if key == "timeout_s":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        return None if ok else "must be a number > 0"
    if key == "command":
        ok = (isinstance(value, list) and bool(value)
              and all(isinstance(a, str) for a in value) and bool(value[0]))
        return None if ok else 'must be a non-empty list of strings, e.g. ["python3", "x.py"]'
    if key == "exclude":
        ok = isinstance(value, list) and all(isinstance(g, str) and g for g in value)
        return None if ok else "must be a list of non-empty glob strings"
    if key == "secrets":
        ok = isinstance(value, list) and all(isinstance(n, str) and n for n in value)
        return None if ok else 'must be a list of secret names, e.g. ["db-password"]'
    # labels, env
    ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return None if ok else "must be a table of string values"
