"""Host values -> the JSON data model TOON encodes (spec §3), and the errors for what has no mapping.

The mapping (documented in docs/toon.md):

- dict (any Mapping) -> object; str keys as they are, int keys as their decimal text (as `json` does);
- list, tuple, set, frozenset -> array (a set in its iteration order);
- str, int, float, bool, None -> themselves (NaN and the infinities are written `null`);
- pydantic model -> `model_dump(mode="json")`, so pydantic's own JSON mapping applies inside it;
- dataclass instance -> object of its fields; Enum -> its value; datetime/date/time -> `isoformat()`;
  UUID -> its text;
- ``...`` (Ellipsis) -> the string "...": the placeholder of documentation examples, as in the
  seed's ``{"employees": [...]}``, encodes as the "..." a reader expects rather than failing;
- Decimal -> a number with its exact digits (`Decimal("1.50")` -> `1.5`, never rounded through a float);
  a non-finite Decimal -> `null`.

Anything else raises TypeError naming the type and where it sits (`$.rows[3].when`). A value that
contains itself raises ConfigurationError, as does nesting deeper than MAX_DEPTH.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from itertools import chain
from typing import Any

from pydantic import BaseModel

from lionflow.errors import ConfigurationError
from lionflow.toon._numbers import format_decimal

MAX_DEPTH = 200
"""Nesting deeper than this is refused (the encoder recurses up to twice per level)."""


class Number(str):
    """A number token already in canonical form (a Decimal's exact digits), written bare."""

    __slots__ = ()


SCALARS = frozenset({str, int, float, bool, type(None), Number})
"""The types of the normalized tree that are written as one token."""

_PLAIN = frozenset({str, int, float, bool, type(None)})
_WHOLE = _PLAIN - {float}  # (a container of these needs no look at how its floats round)
_STR = frozenset({str})
_DICT = {dict}


class _Failure(Exception):
    """Carries an error up the tree, collecting the path on the way."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error
        self.path: list[str | int] = []


class Walk:
    """What one normalization saw: the containers on the current path (to find cycles), whether it
    wrote a Number (a Decimal), which only lionflow's own writer knows to write bare, and the values
    of every container holding a float (`floats`, for the encoder's check of how they round)."""

    __slots__ = ("active", "floats", "numbers")

    def __init__(self) -> None:
        self.active: set[int] = set()
        self.numbers = False
        self.floats: list[Iterable[object]] = []


def normalize(value: object, walk: Walk) -> object:
    """`value` in the JSON data model (dict/list/str/int/float/bool/None, plus Number).

    Containers that need no change are returned as they are (not copied), so a plain JSON-like value
    costs one walk and no allocation.
    """
    try:
        return _normalize(value, walk, 0)
    except _Failure as failure:
        where = path_text(reversed(failure.path))
        error = failure.error
        message = f"{error.args[0]} at {where}"
        raise type(error)(message) from None


def path_text(parts: Any) -> str:
    """`$.rows[3].when`-style text for a path of keys and indexes."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}"
        else:
            text += f"[{part!r}]"
    return text


def _normalize(value: object, walk: Walk, depth: int) -> object:
    kind = type(value)
    if kind is dict:
        return _object(value, walk, depth)  # type: ignore[arg-type]
    if kind is list:
        return _array(value, walk, depth)  # type: ignore[arg-type]
    if kind in SCALARS:
        return value
    converted = _convert(value)
    if type(converted) is Number:
        walk.numbers = True
    elif type(converted) is float:
        walk.floats.append((converted,))
    return _normalize(converted, walk, depth)


def _object(value: dict[Any, Any], walk: Walk, depth: int) -> dict[str, object]:
    if not _STR.issuperset(map(type, value)):
        return _object(_rekeyed(value), walk, depth)
    if _WHOLE.issuperset(map(type, value.values())):
        return value  # only plain scalars and no float: nothing to convert, nothing to recurse into
    if float in map(type, value.values()):
        walk.floats.append(value.values())
        if _PLAIN.issuperset(map(type, value.values())):
            return value
    if depth >= MAX_DEPTH:
        raise _Failure(ConfigurationError(f"TOON encoding nests deeper than {MAX_DEPTH} levels"))
    marker = id(value)
    active = walk.active
    if marker in active:
        raise _Failure(ConfigurationError("TOON cannot encode a value that contains itself"))
    active.add(marker)
    result = value
    key: Any = None
    plain = _PLAIN
    try:
        for key, item in value.items():
            kind = type(item)
            if kind in plain:
                continue
            if kind is dict:
                new: object = _object(item, walk, depth + 1)
            elif kind is list:
                new = _array(item, walk, depth + 1)
            else:
                new = _normalize(item, walk, depth + 1)
            if new is not item:
                if result is value:
                    result = dict(value)
                result[key] = new
    except _Failure as failure:
        failure.path.append(key)
        raise
    finally:
        active.discard(marker)
    return result


def _rekeyed(value: dict[Any, Any]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, item in value.items():
        if isinstance(key, enum.Enum):
            key = key.value
        if type(key) is str:
            result[key] = item
        elif isinstance(key, int) and not isinstance(key, bool):
            result[str(int(key))] = item
        elif isinstance(key, str):
            result[str.__str__(key)] = item
        else:
            message = f"TOON object keys must be str or int, not {type(key).__name__} ({key!r})"
            raise _Failure(TypeError(message))
    return result


def _array(value: list[Any], walk: Walk, depth: int) -> list[object]:
    types = set(map(type, value))
    if float in types:
        walk.floats.append(value)
    if _PLAIN.issuperset(types):
        return value
    if types == _DICT:
        # Rows of a table: check every key and value of every row in C before walking them in Python.
        rows: list[dict[Any, Any]] = value
        if _STR.issuperset(map(type, chain.from_iterable(rows))):
            cells = set(map(type, chain.from_iterable(map(dict.values, rows))))
            if _PLAIN.issuperset(cells):
                if float in cells:
                    walk.floats.append(chain.from_iterable(map(dict.values, rows)))
                return value
    if depth >= MAX_DEPTH:
        raise _Failure(ConfigurationError(f"TOON encoding nests deeper than {MAX_DEPTH} levels"))
    marker = id(value)
    active = walk.active
    if marker in active:
        raise _Failure(ConfigurationError("TOON cannot encode a value that contains itself"))
    active.add(marker)
    result = value
    index = 0
    plain = _PLAIN
    try:
        for index, item in enumerate(value):
            kind = type(item)
            if kind in plain:
                continue
            if kind is dict:
                new: object = _object(item, walk, depth + 1)
            elif kind is list:
                new = _array(item, walk, depth + 1)
            else:
                new = _normalize(item, walk, depth + 1)
            if new is not item:
                if result is value:
                    result = list(value)
                result[index] = new
    except _Failure as failure:
        failure.path.append(index)
        raise
    finally:
        active.discard(marker)
    return result


def _convert(value: object) -> object:
    """One step from a host value towards the JSON model (the result is normalized again)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Decimal):
        return Number(format_decimal(value))
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is Ellipsis:
        return "..."
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    raise _Failure(
        TypeError(
            f"TOON cannot encode a value of type {type(value).__module__}.{type(value).__qualname__}; "
            "convert it to str, a number, a list or a dict first"
        )
    )
