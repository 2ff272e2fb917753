"""The store stands alone: it imports nothing of the platform but the exception tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STORE = Path(__file__).resolve().parents[2] / "src" / "faas" / "store"


@pytest.mark.parametrize("path", sorted(STORE.glob("*.py")), ids=lambda p: p.name)
def test_the_store_imports_only_itself_and_the_errors(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            if name == "faas" or name.startswith("faas."):
                assert name == "faas.errors" or name.startswith("faas.store"), (
                    f"{path.name} imports {name}")
