"""``faas.bundles`` is a leaf: the gateway, the CLI and the tiers may use it, it uses none
of them (standard library, the exception tree and the instance ids only)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import faas.bundles

ALLOWED = {"faas.errors", "faas.instance"}


def test_bundles_import_only_the_standard_library_errors_and_instance_ids() -> None:
    package = Path(faas.bundles.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "faas":
                names = [f"faas.{alias.name}" for alias in node.names]  # from faas import x
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] == "faas":
                    assert name in ALLOWED or name.startswith("faas.bundles."), (
                        f"{path.name} imports {name}")
                else:
                    assert name.split(".")[0] in sys.stdlib_module_names | {"__future__"}, (
                        f"{path.name} imports {name}, not in the standard library")
