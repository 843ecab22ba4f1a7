"""Where a user imports from: the documented packages, each with a sorted `__all__`, and nowhere else.

Modules inside a package are its private layout: they define no `__all__` (it would make them look
like a place to import from), and the docs and examples import only from the documented places.
"""

from __future__ import annotations

import ast
import importlib
import re
import types
from pathlib import Path

import pytest

import lionflow

PACKAGE = Path(lionflow.__file__).parent
ROOT = PACKAGE.parent

# The packages the docs name as import places; their __init__ re-exports the public names.
PUBLIC_PACKAGES = [
    "lionflow",
    "lionflow.guards",
    "lionflow.operations",
    "lionflow.serve",
    "lionflow.services",
    "lionflow.session",
    "lionflow.session.stores",
    "lionflow.streams",
    "lionflow.structured",
    "lionflow.toon",
]
# Single modules that are import places themselves (the error tree, the testing helpers, and the
# adapter contract a new provider subclasses).
PUBLIC_MODULES = {"lionflow.errors", "lionflow.testing", "lionflow.services.providers.base"}
# Private modules whose __all__ another change in flight removes; empty once it lands.
_ALL_BEING_REMOVED: set[str] = set()
# providers.md documents the adapter contract, whose import places are the provider folder's own.
OWN_DOCS = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "providers.md")
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.py"))


def _sort_key(name: str) -> tuple[int, str]:
    # constants, then classes, then functions: the order `ruff --fix` keeps __all__ in
    return (0 if name.isupper() else 1 if name[0].isupper() else 2), name


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _defines_all(path: Path) -> bool:
    return any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        for node in ast.parse(path.read_text(encoding="utf-8")).body
    )


def test_only_import_places_define_all() -> None:
    wrong = [
        _module_name(path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py"
        and _module_name(path) not in PUBLIC_MODULES | _ALL_BEING_REMOVED
        and _defines_all(path)
    ]
    assert wrong == []


@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_a_public_package_exports_exactly_its_sorted_all(name: str) -> None:
    package = importlib.import_module(name)
    exported: list[str] = package.__all__
    assert exported == sorted(exported, key=_sort_key)
    public = {
        attribute
        for attribute in dir(package)
        if not attribute.startswith("_") and not isinstance(getattr(package, attribute), types.ModuleType)
    }
    assert public == set(exported)


def _lionflow_imports(source: str) -> list[tuple[str, str]]:
    """(module, name) for each ``from lionflow... import name`` in `source`."""
    found = []
    pattern = r"^\s*from (lionflow[\w.]*) import (?:\(([^)]*)\)|([^\n]*))"
    for statement in re.finditer(pattern, source, re.M):
        names = statement.group(2) or statement.group(3)
        for line in names.splitlines():
            for name in line.split("#")[0].split(","):
                if name.strip():
                    found.append((statement.group(1), name.split(" as ")[0].strip()))
    return found


@pytest.mark.parametrize("path", OWN_DOCS + EXAMPLES, ids=lambda path: path.name)
def test_docs_and_examples_import_from_the_documented_places(path: Path) -> None:
    # A name `lionflow` exports is imported from `lionflow` (``from lionflow import iModel``, not from
    # lionflow.services), as DESIGN.md shows it; any other from the one documented place that has it.
    # A documented package may also be imported from its parent (``from lionflow import streams``).
    imports = _lionflow_imports(path.read_text(encoding="utf-8"))
    assert imports
    wrong = [
        (module, name)
        for module, name in imports
        if f"{module}.{name}" not in PUBLIC_PACKAGES
        and (
            module not in PUBLIC_PACKAGES + sorted(PUBLIC_MODULES)
            or name not in importlib.import_module(module).__all__
            or (name in lionflow.__all__ and module != "lionflow")
        )
    ]
    assert wrong == []


def test_the_import_scan_sees_the_imports() -> None:
    source = (
        "from lionflow import (\n    Session,  # the state\n    iModel as Model,\n)\n"
        "from lionflow.x import y\n\nz = 1\n"
    )
    assert _lionflow_imports(source) == [("lionflow", "Session"), ("lionflow", "iModel"), ("lionflow.x", "y")]
