"""The direction of imports, checked on the source (``ast``, every import statement, also those
inside functions):

    bot  ->  handlers (package)  ->  handlers.{customer, agents, supervisor}  ->  handlers.core
         ->  {crm_core, knowledge_base}

A module may import its own floor or lower ones, never a higher one; ``crm_core`` and
``knowledge_base`` do not import each other, nor ``telegram``; no module imports ``bot`` (only
tests do); and no two modules import each other, directly or round a longer circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "handlers", "crm_core", "knowledge_base")
# Lower numbers are lower floors. ``handlers`` alone is its __init__: the ordered registration.
FLOORS = {
    "crm_core": 0,
    "knowledge_base": 0,
    "handlers.core": 1,
    "handlers.customer": 2,
    "handlers.agents": 2,
    "handlers.supervisor": 2,
    "handlers": 3,
    "bot": 4,
}
# Same floor, still separate: the two foundations know nothing of each other.
APART = {("crm_core", "knowledge_base"), ("knowledge_base", "crm_core")}
NO_TELEGRAM = ("crm_core", "knowledge_base")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts or path.name == "__init__.py":
                found[module_name(path)] = path
    return found


MODULES = our_modules()


def imported_names(path: Path) -> Iterator[str]:
    """Every module an import statement in ``path`` names (``from a import b`` names ``a.b``
    when that is a module of ours, else ``a``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in MODULES else node.module


def floor_of(module: str) -> tuple[str, int] | None:
    """The floor a module stands on: its longest prefix in FLOORS."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in FLOORS:
            return prefix, FLOORS[prefix]
    return None


def import_graph() -> dict[str, set[str]]:
    return {
        name: {target for target in imported_names(path) if target in MODULES}
        for name, path in MODULES.items()
    }


def test_the_walk_sees_every_package_and_their_imports() -> None:
    # Guards the test itself: an empty walk would pass everything.
    graph = import_graph()
    assert {"bot.app", "handlers.core.send", "crm_core.models", "knowledge_base.search"} <= set(
        graph
    )
    assert "handlers.core.context" in graph["handlers.core.send"]


def layer_violations() -> list[str]:
    problems = []
    for name, path in MODULES.items():
        source = floor_of(name)
        assert source is not None, f"{name} stands on no floor: add it to FLOORS"
        for target in imported_names(path):
            top = target.split(".")[0]
            if top == "telegram" and source[0] in NO_TELEGRAM:
                problems.append(f"{name} imports telegram")
            if top == "bot" and source[0] != "bot":
                problems.append(f"{name} imports {target}: nothing imports bot but tests")
                continue
            if top not in PACKAGES:
                continue
            destination = floor_of(target)
            assert destination is not None
            if destination[1] > source[1]:
                problems.append(f"{name} (floor {source[0]}) imports higher {target}")
            if (source[0], destination[0]) in APART:
                problems.append(f"{name} imports {target}")
    return problems


def test_no_module_imports_a_higher_floor() -> None:
    assert layer_violations() == []


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself),
    by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:end]) for end in range(1, len(parts))}


def with_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Importing ``a.b.c`` from elsewhere runs ``a/b/__init__`` first: that is an import too,
    and a circle through another sub-package's __init__ breaks at run time (a name asked of a
    module that is only half initialised). A module's own packages are initialised before it
    starts, and the top-level packages before anything in them: those close no circle."""
    full: dict[str, set[str]] = {}
    for name, targets in graph.items():
        implicit = {
            package
            for target in targets
            for package in ancestors(target) - ancestors(name)
            if package in graph and package not in PACKAGES and package != name
        }
        full[name] = targets | implicit
    return full


def test_no_import_cycles() -> None:
    assert find_cycles(with_package_inits(import_graph())) == []


def test_a_circle_through_a_package_init_is_found() -> None:
    # b.x imports c.y; importing c.y runs c/__init__, which imports b.x: a circle at run time.
    graph = {"p.b.x": {"p.c.y"}, "p.c.y": set(), "p.c": {"p.b.x"}, "p.b": set(), "p": set()}
    assert find_cycles(graph) == []
    assert find_cycles(with_package_inits(graph)) == [["p.b.x", "p.c"]]
    # A package's __init__ importing its own modules, which import each other, is no circle:
    # the __init__ is initialised before any of them starts.
    facade = {"p.c": {"p.c.y", "p.c.z"}, "p.c.y": {"p.c.z"}, "p.c.z": set(), "p": set()}
    assert find_cycles(with_package_inits(facade)) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_cycle_finder_finds_direct_and_long_circles(
    graph: dict[str, set[str]], expected: list[list[str]]
) -> None:
    assert find_cycles(graph) == expected


def test_a_higher_import_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A crm_core module importing a handler must be caught (so the real check can fail).
    fake = tmp_path / "crm_core" / "bad.py"
    fake.parent.mkdir()
    fake.write_text("from handlers.core.send import reply\nimport telegram\n")
    monkeypatch.setitem(MODULES, "crm_core.bad", fake)
    problems = layer_violations()
    assert "crm_core.bad (floor crm_core) imports higher handlers.core.send" in problems
    assert "crm_core.bad imports telegram" in problems
