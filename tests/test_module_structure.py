"""Dependencies in function/ point down: no module imports one that (through others)
imports it back, counting every import, also those only for type checking or inside a
function; and nothing below the handlers imports them."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "function"
MODULES = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
HANDLERS = {"routes", "events"}
ABOVE_THE_HANDLERS = {"handler"}  # the entry point's request path, which calls them


def imports_of(module: str) -> set[str]:
    """The function/ modules `module` imports, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module is None:  # from . import a, b
                found.update(alias.name for alias in node.names)
            else:  # from .a import b
                found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("function."):
            found.add(node.module.split(".")[1])  # type: ignore[union-attr]
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("function."))
    return found & MODULES


GRAPH = {module: imports_of(module) for module in MODULES}


def a_cycle() -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, str] = {}  # visiting / done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "visiting"
        for imported in sorted(GRAPH[module]):
            if state.get(imported) == "visiting":
                return path[path.index(imported):] + [imported]
            if imported not in state:
                cycle = visit(imported, path + [imported])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for module in sorted(GRAPH):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def test_the_graph_was_read() -> None:
    assert "reading" in GRAPH["routes"] and "service" in GRAPH["handler"] and "startup" in GRAPH["main"]


def test_no_import_cycle_in_the_function_package() -> None:
    assert a_cycle() is None, " -> ".join(a_cycle() or [])


def test_nothing_below_the_handlers_imports_them() -> None:
    importers = {module for module, imported in GRAPH.items() if imported & HANDLERS}
    assert importers <= ABOVE_THE_HANDLERS
