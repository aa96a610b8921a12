"""The package's shape: no import cycles between its modules, and no module too long to read.

Both read the source with `ast` (nothing is imported), so they run in well under a second.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "safehpo"
MAX_LINES = 450



def module_name(path: Path) -> str:
    return "safehpo" if path.name == "__init__.py" else f"safehpo.{path.stem}"


def intra_package_imports(path: Path) -> set[str]:
    """The safehpo modules a module imports anywhere in it: at the top, inside functions, under
    `if TYPE_CHECKING`; as `from . import x`, `from .x import y`, `import safehpo.x`,
    `from safehpo import x`."""
    modules = {module_name(p) for p in PACKAGE.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("safehpo")}
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:
                raise AssertionError(f"{path.name}: an import reaches above the package")
            base = "safehpo" if node.level == 1 else (node.module or "")
            if node.level == 1 and node.module:
                base = f"safehpo.{node.module}"
            if not base.startswith("safehpo"):
                continue
            found.add(base)
            # `from . import x` / `from safehpo import x` imports the module x
            found |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
    return (found & modules) - {module_name(path), "safehpo"}


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): intra_package_imports(p) for p in sorted(PACKAGE.glob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_function_local_imports_count(tmp_path, monkeypatch):
    (tmp_path / "x.py").write_text("def f():\n    from .y import g\n    from . import z\n")
    for name in ("y", "z"):
        (tmp_path / f"{name}.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    assert intra_package_imports(tmp_path / "x.py") == {"safehpo.y", "safehpo.z"}


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_over_450_lines():
    long = {p.name: n for p in PACKAGE.glob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
