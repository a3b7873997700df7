"""Dependencies in function/ point down: no module imports one that (through others)
imports it back, counting every import, also those only for type checking or inside a
function; nothing below the handlers imports them; order events out (events_out/) draws
no import upward; and docs/design.md's module map names exactly the modules there are."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PACKAGE = PROJECT / "function"
# Dotted names below function/: "orders", "events_out.relay".
MODULES = {
    ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"
}
HANDLERS = {"http_in", "events_in"}
ABOVE_THE_HANDLERS = {"dispatch"}  # the entry point's request path, which calls them
EVENTS_OUT = {module for module in MODULES if module.startswith("events_out.")}


def _known(dotted: str, names: list[str]) -> set[str]:
    """The modules an import of `names` from package-or-module `dotted` reaches."""
    if dotted in MODULES:
        return {dotted}
    prefix = dotted + "." if dotted else ""
    found = {prefix + name for name in names if prefix + name in MODULES}
    if not found and any(module.startswith(prefix) for module in MODULES):
        found = {module for module in MODULES if module.startswith(prefix)}  # the package itself
    return found


def imports_of(module: str) -> set[str]:
    """The function/ modules `module` imports, wherever the import statement stands."""
    here = module.split(".")[:-1]  # the package it sits in, below function/
    found: set[str] = set()
    for node in ast.walk(ast.parse((PACKAGE / (module.replace(".", "/") + ".py")).read_text())):
        if isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.level > 0:
                base = here[: len(here) - (node.level - 1)]
                found |= _known(".".join([*base, *([node.module] if node.module else [])]), names)
            elif (node.module or "").startswith("function."):
                found |= _known(node.module.removeprefix("function."), names)  # type: ignore[union-attr]
            elif node.module == "function":
                found |= _known("", names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("function."):
                    found |= _known(alias.name.removeprefix("function."), [])
    return found - {module}


GRAPH = {module: imports_of(module) for module in MODULES}


def reached_from(module: str) -> set[str]:
    """Every module `module` imports, directly or through others."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for imported in GRAPH[todo.pop()]:
            if imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return seen


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
    assert "request" in GRAPH["http_in"] and "worker" in GRAPH["dispatch"] and "startup" in GRAPH["main"]
    assert {"events_out.outbox", "events_out.publisher", "database"} <= GRAPH["events_out.relay"]
    assert "events_out.relay" in GRAPH["worker"]


def test_no_import_cycle_in_the_function_package() -> None:
    assert a_cycle() is None, " -> ".join(a_cycle() or [])


def test_nothing_below_the_handlers_imports_them() -> None:
    importers = {module for module, imported in GRAPH.items() if imported & HANDLERS}
    assert importers <= ABOVE_THE_HANDLERS


def test_order_events_out_draws_no_import_upward() -> None:
    """What events_out/ uses lies below it (nothing of it reaches events_out/ back, nor the
    request path); only the wiring of a worker brings it in; the event's identity sits
    below it, events in and tracing alike."""
    below = set().union(*(reached_from(module) for module in EVENTS_OUT)) - EVENTS_OUT
    assert not {module for module in below if reached_from(module) & EVENTS_OUT}
    assert not below & {"main", "startup", "framework_patch", "worker", "dispatch", *HANDLERS}
    assert {module for module, imported in GRAPH.items() if imported & EVENTS_OUT} - EVENTS_OUT == {"worker"}
    assert all("created_event" in reached_from(module) for module in ("events_out.publisher", "events_in", "tracing"))
    assert GRAPH["created_event"] == set()


def test_the_module_map_in_the_design_page_names_exactly_the_modules() -> None:
    design = (PROJECT / "docs" / "design.md").read_text()
    block = design.split("## The modules", 1)[1].split("```", 2)[1]
    lines = block.split("\n")
    start = lines.index("function/")
    mapped: set[str] = set()
    for line in lines[start + 1:]:
        if not line.startswith("  "):  # the next top-level folder
            break
        mapped |= {name.removesuffix(".py").replace("/", ".") for name in re.findall(r"[\w/]+\.py\b", line)}
    assert mapped == MODULES, f"missing from the map: {sorted(MODULES - mapped)}; not in the tree: {sorted(mapped - MODULES)}"
