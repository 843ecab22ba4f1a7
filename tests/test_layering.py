"""The package's modules import one way: no cycles, and no layer imports the one above it.

A newcomer reads ``operations -> session -> services -> errors`` from DESIGN.md; these tests keep
the code saying the same. Imports under ``if TYPE_CHECKING:`` count: a cycle there is still a
collaborator reaching back to its owner. No layer imports one above it, not even inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lionflow

PACKAGE = Path(lionflow.__file__).parent

# errors.py is imported by every layer; its annotation-only imports of the results it carries
# (`Response`, `FlowResults`) are not a dependency of any layer on another.
_ANNOTATION_ONLY = {"lionflow.errors"}

# (a layer, the layers above it that it must never import)
_LAYERS = [
    ("lionflow.services", ("lionflow.session", "lionflow.operations", "lionflow.serve", "lionflow.cli")),
    ("lionflow.session", ("lionflow.operations", "lionflow.serve", "lionflow.cli")),
    ("lionflow.operations", ("lionflow.serve", "lionflow.cli")),
    ("lionflow.serve", ("lionflow.cli",)),
    # a leaf, used from above (it may read `services.chunk` for Chunk, nothing else up there)
    ("lionflow.structured", ("lionflow.session", "lionflow.operations", "lionflow.serve", "lionflow.cli")),
    ("lionflow.guards", ("lionflow.session", "lionflow.operations", "lionflow.serve", "lionflow.cli")),
    # a leaf under everything: typed streams read and write bytes, and know only lionflow.errors
    (
        "lionflow.streams",
        (
            "lionflow.services",
            "lionflow.session",
            "lionflow.operations",
            "lionflow.serve",
            "lionflow.cli",
            "lionflow.structured",
            "lionflow.guards",
            "lionflow.testing",
        ),
    ),
    # a leaf under everything but the structured parser's protocol: TOON text in and out
    (
        "lionflow.toon",
        (
            "lionflow.services",
            "lionflow.session",
            "lionflow.operations",
            "lionflow.serve",
            "lionflow.cli",
            "lionflow.guards",
            "lionflow.streams",
            "lionflow.testing",
        ),
    ),
]


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            continue  # a package's re-exports are its surface, not a dependency of its modules
        modules[".".join(parts)] = path
    return modules


def _module_level(tree: ast.AST) -> list[ast.AST]:
    """The nodes outside function bodies: what importing the module runs (``if TYPE_CHECKING:``
    included). An import inside a function (an optional SDK, the class for another endpoint) runs
    only when called, and is no dependency of the module's own."""
    found: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        found.append(node)
        pending.extend(
            child
            for child in ast.iter_child_nodes(node)
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        )
    return found


def _imports(path: Path, *, lazy: bool = False) -> set[str]:
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree) if lazy else _module_level(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.startswith("lionflow"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: set() if name in _ANNOTATION_ONLY else {m for m in _imports(path) if m in modules}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
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
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = _graph()
    assert "lionflow.services.call" in graph  # the walk found the package's modules
    assert _cycles(graph) == []


def test_no_layer_imports_a_layer_above_it() -> None:
    modules = _modules()
    wrong = [
        (name, target)
        for name, path in modules.items()
        for layer, above in _LAYERS
        if name.startswith(layer + ".")
        for target in _imports(path, lazy=True)
        if target.startswith(above)
    ]
    assert wrong == []
