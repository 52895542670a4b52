"""The package's shape: no module imports another's underscore names or reaches into another object's
underscore attributes, and the module-level imports have no cycle (issue 13: the runtime rebuilt so that
its parts talk through public methods)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "syncpoint"
MODULES = sorted(SRC.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def top_level_imports(tree: ast.Module) -> list[ast.ImportFrom | ast.Import]:
    """Imports executed when the module loads: not inside functions, not under ``if TYPE_CHECKING``."""
    found: list[ast.ImportFrom | ast.Import] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.Try) or (
            isinstance(node, ast.If) and not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        ):
            found.extend(n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return found


def private_names_defined(tree: ast.Module) -> set[str]:
    """Underscore names a module defines: functions, classes, methods, and attributes it assigns on self."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and is_private(node.name):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and is_private(node.attr) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and is_private(node.id) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and is_private(node.value):
            names.add(node.value)  # __slots__ entries
    return names


TREES = {path: ast.parse(path.read_text(), str(path)) for path in MODULES}
DEFINED = {path: private_names_defined(tree) for path, tree in TREES.items()}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_uses_another_modules_underscore_names(path: Path) -> None:
    """A module may use its own underscore names on any object (``other._starts`` in ``__eq__``), never
    one that only another syncpoint module defines."""
    tree = TREES[path]
    mine = DEFINED[path]
    elsewhere = set().union(*(names for other, names in DEFINED.items() if other != path)) - mine
    # modules of other packages (``os._exit``, ``sys._getframe``) are not syncpoint's: their names are theirs
    foreign = {alias.asname or alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names if not alias.name.startswith("syncpoint")}
    offences: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("syncpoint"):
            offences += [f"line {node.lineno}: imports {a.name}" for a in node.names if is_private(a.name)]
        if isinstance(node, ast.Attribute) and is_private(node.attr) and node.attr in elsewhere:
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls", *foreign)):
                offences.append(f"line {node.lineno}: reaches into .{node.attr}")
    assert not offences, offences


def test_module_level_imports_have_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    names = {module_name(p) for p in MODULES}
    for path, tree in TREES.items():
        edges: set[str] = set()
        for node in top_level_imports(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                submodules = {f"{node.module}.{a.name}" for a in node.names} & names
                edges.update(submodules)
                if len(submodules) < len(node.names):  # some names come from the module itself
                    edges.add(node.module)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
        graph[module_name(path)] = {e for e in edges if e in names and e != module_name(path)}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
