"""The package's modules form layers that import one way, with no cycle.

The import graph is read from the source with ``ast``: every import counts,
at the top of a module, inside a function (imported when called) and under
``if TYPE_CHECKING``, because each is a dependency a reader must follow.
Every module is assigned a layer below; a module may import only from its
own layer or a lower one, and a new module must be given a layer here.
docs/architecture.md draws the same map.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

PACKAGE: Final = Path(__file__).resolve().parent.parent / "combinators"

#: Layers, lowest first: a module imports only from its own layer or below.
LAYERS: Final[tuple[tuple[str, frozenset[str]], ...]] = (
    # Values and checks every layer uses; no trio, no tree.
    ("base", frozenset({"_types", "_handles", "_exceptions", "_check", "_backends", "_notes"})),
    # What the tree's nodes hold, and the interfaces of what plugs into a run.
    ("values", frozenset({"_limits", "_retry", "_budget", "_cache_store", "_executor_api"})),
    # The expression tree: Agent and every node its methods build.
    ("tree", frozenset({"_expr"})),
    # Compiling and running: the plan's registry and a rule per node kind.
    (
        "interpreter",
        frozenset({
            "_plan", "_observe", "_aio_leaf", "_cancel", "_chain", "_run", "_control",
            "_fanout", "_workflow", "_executors", "_spend", "_stream",
        }),
    ),
    # Reading trees and runs: JSON, reports, traces, drawings, estimates.
    ("readers", frozenset({"_json", "_report", "_trace", "_mermaid", "_estimate"})),
    # What plugs into a run: journals, caches, shared budgets, executors, observers.
    (
        "plugins",
        frozenset({
            "_journal", "_journal_store", "_journal_sqlite", "_journal_postgres", "_cache",
            "_cache_postgres", "_budget_postgres", "_processes", "_ray", "_progress", "otel", "_plugins",
        }),
    ),
    # The public faces.
    # The internal API the object-style layer builds on (issue 17, part 3).
    ("internal", frozenset({"_internal"})),
    # The public faces; the task pool is the object-style layer's own node kind.
    (
        "top",
        frozenset({"_aio", "aio", "_cli", "__main__", "orchestration", "_orchestration_pool", "testing", "__init__"}),
    ),
)

#: Readers should need only the data below the interpreter.  These
#: interpreter modules still hold data they read (node classes defined
#: beside their compile rules, and the event record): the known debts,
#: named so that no new one slips in.
READER_DEBTS: Final = frozenset({
    ("_json", "_fanout"), ("_json", "_workflow"), ("_json", "_observe"),
    ("_mermaid", "_control"), ("_mermaid", "_workflow"),
    ("_estimate", "_control"), ("_estimate", "_fanout"), ("_estimate", "_workflow"),
    ("_report", "_observe"), ("_trace", "_observe"),
})


def _layer_of() -> dict[str, int]:
    return {module: i for i, (_, modules) in enumerate(LAYERS) for module in modules}


def imports(source: str, modules: set[str]) -> set[str]:
    """The package modules ``source`` imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module is not None and node.module.startswith("combinators."):
                found.add(node.module.split(".")[1])
            elif node.module == "combinators":
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("combinators."))
    return found & modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (itself and ``__init__`` left out)."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {
        p.stem: imports(p.read_text(encoding="utf-8"), modules) - {p.stem, "__init__"}
        for p in PACKAGE.glob("*.py")
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` in import order (first module repeated at the end), or None."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for root in sorted(graph):
        if colour[root] != white:
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        colour[root] = grey
        while stack:
            node, todo = stack[-1]
            if not todo:
                colour[node] = black
                stack.pop()
                continue
            nxt = todo.pop()
            if colour[nxt] == grey:
                path = [n for n, _ in stack]
                return [*path[path.index(nxt) :], nxt]
            if colour[nxt] == white:
                colour[nxt] = grey
                stack.append((nxt, sorted(graph[nxt])))
    return None


def test_every_module_has_a_layer() -> None:
    layer = _layer_of()
    unassigned = sorted(set(import_graph()) - set(layer))
    assert not unassigned, f"give these modules a layer in tests/test_layers.py (and docs/architecture.md): {unassigned}"
    gone = sorted(set(layer) - set(import_graph()))
    assert not gone, f"tests/test_layers.py assigns a layer to modules that no longer exist: {gone}"


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_point_down() -> None:
    layer = _layer_of()
    names = [name for name, _ in LAYERS]
    wrong = [
        f"{a} ({names[layer[a]]}) imports {b} ({names[layer[b]]})"
        for a, deps in sorted(import_graph().items())
        for b in sorted(deps)
        if a in layer and b in layer and layer[b] > layer[a]
    ]
    assert not wrong, "imports that point up a layer:\n" + "\n".join(wrong)


def test_readers_read_data_only() -> None:
    layer = _layer_of()
    interpreter = next(i for i, (name, _) in enumerate(LAYERS) if name == "interpreter")
    readers = LAYERS[interpreter + 1][1]
    wrong = [
        f"{a} imports {b}"
        for a in sorted(readers)
        for b in sorted(import_graph()[a])
        if layer.get(b) == interpreter and (a, b) not in READER_DEBTS
    ]
    assert not wrong, "a reader imports the interpreter (it should need only the data layers):\n" + "\n".join(wrong)


def test_the_checker_finds_a_cycle_and_an_upward_import() -> None:
    # The checks above must be able to fail: a cycle and a lazy import are seen.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    lazy = "def f():\n    from ._run import run\nif TYPE_CHECKING:\n    from . import _journal\n"
    assert imports(lazy, {"_run", "_journal"}) == {"_run", "_journal"}
