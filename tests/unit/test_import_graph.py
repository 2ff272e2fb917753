"""The runtime (executors, orchestrator, gateway) never imports the guest image builder.

The executors need only ``faas.images.manifest`` (where the built images are,
the agent's port names) and ``faas.images.common`` (hashing, locks, running a
tool); building images is ``faas image build``'s. The graph is read from the
source (every ``import``, function-level ones included, since those run too).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
RUNTIME_ROOTS = ("faas.executors", "faas.orchestrator", "faas.gateway", "faas.pool")
BUILDER = ("faas.images.build", "faas.images.rootfs", "faas.images.kernel",
           "faas.images.initramfs", "faas.images.disk", "faas.images.docker_image",
           "faas.images.guest_init", "faas.images.cli")


def _module_path(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(name: str, path: Path) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    result: set[str] = set()
    for imported in found:
        if not imported.startswith("faas"):
            continue
        parts = imported.split(".")  # a module and its parent packages run on import
        result.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in result if _module_path(m) is not None}


def runtime_closure() -> dict[str, str]:
    """Every faas module the runtime imports, with one module that imports it."""
    roots = [str(p.relative_to(SRC).with_suffix("")).replace("/", ".").removesuffix(".__init__")
             for p in SRC.joinpath("faas").rglob("*.py")]
    todo = [m for m in roots if m.startswith(RUNTIME_ROOTS)]
    seen = {m: "(root)" for m in todo}
    while todo:
        name = todo.pop()
        path = _module_path(name)
        if path is None:
            continue
        for imported in _imports(name, path):
            if imported not in seen:
                seen[imported] = name
                todo.append(imported)
    return seen


def test_no_runtime_module_imports_the_image_builder() -> None:
    closure = runtime_closure()
    assert "faas.executors.microvm.executor" in closure  # the walk reaches the tier
    assert "faas.images.manifest" in closure
    assert {m: closure[m] for m in BUILDER if m in closure} == {}
