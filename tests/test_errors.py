"""The error tree: one module, one root, and a docstring drawing that matches the classes."""

from __future__ import annotations

import inspect
import re

import lionflow
import lionflow.errors as errors
from lionflow.errors import LionflowError

_LINE = re.compile(r"^(?P<indent>(?:│   |    )*)(?:├── |└── )?(?P<name>[A-Z]\w+)(?: \((?P<extra>[\w, ]+)\))?")


def _drawing() -> dict[str, tuple[str | None, list[str]]]:
    """{class name: (parent drawn above it, extra bases drawn in parentheses)}."""
    doc = errors.__doc__ or ""
    tree = doc.split("::", 1)[1].split("\n\n", 2)[1]
    drawn: dict[str, tuple[str | None, list[str]]] = {}
    stack: list[str] = []
    for line in tree.splitlines():
        match = _LINE.match(line.strip("\n")[4:] if line.startswith("    ") else line)
        assert match, f"unreadable line in the drawing: {line!r}"
        depth = len(match["indent"]) // 4 + (0 if match["name"] == "LionflowError" else 1)
        del stack[depth:]
        parent = stack[-1] if stack else None
        extra = [name.strip() for name in (match["extra"] or "").split(",") if name.strip()]
        drawn[match["name"]] = (parent, extra)
        stack.append(match["name"])
    return drawn


def _defined() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, LionflowError) and value.__module__ == errors.__name__
    }


def test_the_docstring_draws_every_error_class_with_its_real_bases() -> None:
    drawn = _drawing()
    defined = _defined()
    assert set(drawn) == set(defined), set(drawn) ^ set(defined)
    for name, (parent, extra) in drawn.items():
        cls = defined[name]
        bases = [base.__name__ for base in cls.__bases__]
        expected = ([parent] if parent else ["Exception"]) + extra
        assert bases == expected, f"{name}: drawn as {expected}, defined with {bases}"


def test_every_error_class_of_the_package_lives_in_lionflow_errors() -> None:
    # Walk every subclass that exists once the whole package is imported (providers included).
    import lionflow.operations
    import lionflow.structured
    import lionflow.testing  # noqa: F401

    seen: set[type[BaseException]] = set()
    pending: list[type[BaseException]] = [LionflowError]
    while pending:
        cls = pending.pop()
        seen.add(cls)
        pending.extend(sub for sub in cls.__subclasses__() if sub not in seen)
    strays = {cls.__qualname__: cls.__module__ for cls in seen if cls.__module__.startswith("lionflow.")}
    strays = {name: module for name, module in strays.items() if module != "lionflow.errors"}
    assert not strays, f"errors defined outside lionflow/errors.py: {strays}"


def test_each_error_is_exported_from_the_package_root() -> None:
    missing = sorted(name for name in _defined() if getattr(lionflow, name, None) is not _defined()[name])
    assert not missing, f"not importable from lionflow: {missing}"
