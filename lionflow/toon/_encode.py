"""`encode`: a value as TOON text (spec v4.0, in the canonical layout that 4.1 makes mandatory).

Layout rules, with the SPEC.md sections they come from:

- objects: `key: value`, a nested object as `key:` with its fields one level deeper, `key:` alone for
  `{}` (§8); an object of two or more objects sharing one key set of primitive (or nested-uniform)
  values uses the keyed tabular form `key[N:]{a,b}:` with `entry: 1,2` rows (§9.5);
- arrays: `key: []` when empty (root `[]`, list item `- [0]:`); all primitives inline `key[N]: a,b`
  (§9.1); objects sharing one key set of primitive or nested-uniform columns in tabular form
  `key[N]{a,b{c,d}}:` with one row per object in the first object's field order (§9.3); anything else
  in list form, `key[N]:` with `- item` lines (§9.2, §9.4), where an array item is `- [M]: ...` and
  never tabular;
- an object as a list item has its first field on the hyphen line and the others one level deeper,
  a bare `-` when empty (§10);
- every header declares the document delimiter (`[N|]`, `[N\\t]{a\\tb}`), and every value is quoted
  against it (§11); no trailing spaces, no trailing newline, LF only (§12).
"""

from __future__ import annotations

from itertools import chain, compress
from typing import Any

from lionflow.errors import ConfigurationError
from lionflow.toon._normalize import SCALARS, Number, Walk, normalize, path_text
from lionflow.toon._numbers import format_float, format_floats, halfway
from lionflow.toon._quote import DELIMITERS, column_is_bare, format_key, value_quoter

_DICT = {dict}


def encode(value: object, *, indent: int = 2, delimiter: str = ",") -> str:
    """`value` as TOON text (spec v4.0).

    `indent` is the number of spaces per level (at least 1); `delimiter` is ``","`` (default), ``"|"``
    or ``"\\t"`` and separates inline values, tabular cells and header fields. Accepts JSON-like values
    and what pydantic can dump (models, dataclasses, datetimes, enums, Decimal, UUID, sets and tuples;
    see `lionflow.toon._normalize` for the mapping). Raises TypeError for a value of another type,
    naming it and where it sits, and ConfigurationError for a bad option, a value that contains itself,
    or a string holding a lone surrogate (TOON text is UTF-8)::

        >>> encode({"users": [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}]})
        'users[2]{id,name}:\\n  1,Ada\\n  2,Bob'
    """
    if type(indent) is not int or indent < 1:
        raise ConfigurationError(f"indent must be an int >= 1, not {indent!r}")
    if delimiter not in DELIMITERS:
        raise ConfigurationError(f'delimiter must be ",", "|" or "\\t", not {delimiter!r}')
    return _encode(value, indent, delimiter, compiled=True)


def _encode(value: object, indent: int, delimiter: str, *, compiled: bool) -> str:
    """`encode` after the option checks; `compiled=False` keeps to the pure-Python writer (tests)."""
    walk = Walk()
    tree = normalize(value, walk)
    text = None
    if compiled and indent >= 2 and not walk.numbers and not _holds_halfway(tree, walk):
        text = _compiled(tree, indent, delimiter)
    if text is None:
        text = _write(tree, " " * indent, delimiter)
    if not text.isascii():
        _check_unicode(text, tree)
    return text


_UNSET: Any = object()
_toons_dumps: Any = _UNSET


def _compiled(tree: object, indent: int, delimiter: str) -> str | None:
    """The document from `toons` (the optional extra `lionflow[toon]`, Rust), or None without it.

    toons writes exactly our canonical layout for JSON data (tests/toon/test_encode.py checks the two
    writers agree on random values), about ten times faster; it is not asked to write a Decimal's
    exact digits (`walk.numbers`), a float halfway between its two shortest decimals, which it rounds
    up where Python and JavaScript round to even (`_holds_halfway`), or an indent of 1, which it
    refuses. Should it refuse a value, the pure-Python writer answers instead (and raises the error
    worth reading).
    """
    global _toons_dumps
    if _toons_dumps is _UNSET:
        try:
            import toons
        except ImportError:
            _toons_dumps = None
        else:
            _toons_dumps = toons.dumps
    if _toons_dumps is None:
        return None
    try:
        text: str = _toons_dumps(tree, indent_size=indent, delimiter=delimiter)
    except Exception:
        return None
    return text


def _holds_halfway(tree: object, walk: Walk) -> bool:
    """Whether a float in `tree` lies halfway between its two shortest decimals (`halfway`), which
    `toons` would round otherwise than `format_float`. The values of the containers holding floats
    (`Walk.floats`) are sifted in C: only a float with at most 25 binary places, which few are, is
    looked at in Python."""
    if type(tree) is float:
        return halfway(tree)
    if not walk.floats:
        return False
    values = list(chain.from_iterable(walk.floats))
    floats: list[float] = list(compress(values, map(_FLOAT.__contains__, map(type, values))))  # type: ignore[arg-type]
    return any(map(halfway, compress(floats, map(float.is_integer, map(_PLACES.__mul__, floats)))))


_FLOAT = frozenset({float})
# (a float times 2**25 is a whole number when it has at most 25 binary places; NaN and the
# infinities are not, and neither is a float so large that the product overflows: those are whole)
_PLACES = 2.0**25


def _write(tree: object, step: str, delimiter: str) -> str:
    """The document for a normalized tree. Nested functions share the state as closure cells, which
    is markedly faster than attributes on this path that runs once per field."""
    lines: list[str] = []
    append = lines.append
    mark = "" if delimiter == "," else delimiter  # the delimiter symbol inside `[N]`
    join = delimiter.join
    string = value_quoter(delimiter)

    def token(value: object) -> str:
        kind = type(value)
        if kind is str:
            return string(value)  # type: ignore[arg-type]
        if kind is int or kind is Number:
            return str(value)
        if kind is bool:
            return "true" if value else "false"
        if kind is float:
            return format_float(value)  # type: ignore[arg-type]
        return "null"

    def cells(values: list[Any]) -> list[str]:
        """Tokens for a column (or inline array) of primitives, with a fast path per column type."""
        types = set(map(type, values))
        if len(types) == 1:
            if str in types:
                # One scan of the joined column beats a test per value once a column has a few rows.
                if len(values) > 8 and column_is_bare(values, delimiter):
                    return values
                return list(map(string, values))
            if int in types:
                return list(map(str, values))
            if float in types:
                return format_floats(values)
        return list(map(token, values))

    def rows(columns: list[list[Any]]) -> list[str]:
        return list(map(join, zip(*map(cells, columns), strict=True)))

    def fields(header: _Header) -> str:
        parts = [
            format_key(name) if sub is None else f"{format_key(name)}{{{fields(sub)}}}"
            for name, sub in header
        ]
        return join(parts)

    def field(lead: str, pre: str, key: str, value: object) -> None:
        """One `key: ...` field whose line starts with `lead` (indentation, or a list item's `- `) and
        whose scope is indented `pre`."""
        kind = type(value)
        if kind is str:
            append(f"{lead}{key}: {string(value)}")  # type: ignore[arg-type]
        elif kind is dict:
            if not value:
                append(f"{lead}{key}:")
                return
            table = _keyed_table(value) if len(value) > 1 else None  # type: ignore[arg-type]
            if table is not None:
                keyed(lead, pre, key, value, table)  # type: ignore[arg-type]
                return
            append(f"{lead}{key}:")
            inner = pre + step
            for name, item in value.items():  # type: ignore[attr-defined]
                field(inner, inner, format_key(name), item)
        elif kind is list:
            if value:
                array(lead, pre, key, value, item=False)  # type: ignore[arg-type]
            else:
                append(f"{lead}{key}: []")
        else:
            append(f"{lead}{key}: {token(value)}")

    def keyed(lead: str, pre: str, key: str, obj: dict[str, Any], table: _Table) -> None:
        """`key[N:]{fields}:` and one `entry: cells` row per entry (§9.5)."""
        header, columns = table
        append(f"{lead}{key}[{len(obj)}:{mark}]{{{fields(header)}}}:")
        inner = pre + step
        lines.extend(
            [f"{inner}{format_key(name)}: {row}" for name, row in zip(obj, rows(columns), strict=True)]
        )

    def array(lead: str, pre: str, key: str, items: list[Any], *, item: bool) -> None:
        """A non-empty array; `item` is true for an array that is itself a list item (never tabular)."""
        count = f"{key}[{len(items)}{mark}]"
        types = set(map(type, items))
        if types <= SCALARS:
            append(f"{lead}{count}: {join(cells(items))}")
            return
        if not item and types == _DICT:
            table = _table(items)
            if table is not None:
                header, columns = table
                append(f"{lead}{count}{{{fields(header)}}}:")
                inner = pre + step
                lines.extend([inner + row for row in rows(columns)])
                return
        append(f"{lead}{count}:")
        inner = pre + step
        for value in items:
            list_item(inner, value)

    def list_item(pre: str, value: object) -> None:
        kind = type(value)
        if kind is dict:
            if not value:
                append(f"{pre}-")
                return
            pairs = iter(value.items())  # type: ignore[attr-defined]
            inner = pre + step
            name, first = next(pairs)
            # The first field stands one level deeper than the hyphen, so its children are two deeper.
            field(f"{pre}- ", inner, format_key(name), first)
            for name, item in pairs:
                field(inner, inner, format_key(name), item)
        elif kind is list:
            if value:
                array(f"{pre}- ", pre, "", value, item=True)  # type: ignore[arg-type]
            else:
                append(f"{pre}- [0{mark}]:")
        else:
            append(f"{pre}- {token(value)}")

    kind = type(tree)
    if kind is dict:
        if not tree:
            return ""
        table = _keyed_table(tree)  # type: ignore[arg-type]
        if table is not None:
            keyed("", "", "", tree, table)  # type: ignore[arg-type]
        else:
            for name, item in tree.items():  # type: ignore[attr-defined]
                field("", "", format_key(name), item)
    elif kind is list:
        if not tree:
            return "[]"
        array("", "", "", tree, item=False)  # type: ignore[arg-type]
    else:
        return token(tree)
    return "\n".join(lines)


# A header is a list of (field name, nested header or None); a table is a header plus its leaf columns
# in depth-first order.
_Header = list[tuple[str, "_Header | None"]]
_Table = tuple[_Header, list[list[Any]]]


def _table(rows: list[dict[str, Any]]) -> _Table | None:
    """The tabular header and leaf columns of `rows`, or None when they are not eligible (§9.3)."""
    first = rows[0]
    if not first:
        return None
    keys = first.keys()
    for row in rows:
        if type(row) is not dict or row.keys() != keys:
            return None
    header: _Header = []
    columns: list[list[Any]] = []
    for name in first:
        column = [row[name] for row in rows]
        types = set(map(type, column))
        if types <= SCALARS:
            header.append((name, None))
            columns.append(column)
        elif types == {dict}:
            nested = _table(column)
            if nested is None:
                return None
            header.append((name, nested[0]))
            columns.extend(nested[1])
        else:
            return None
    return header, columns


def _keyed_table(obj: dict[str, Any]) -> _Table | None:
    """The keyed-tabular header and columns of `obj`, or None when it is not eligible (§9.5)."""
    if len(obj) < 2:
        return None
    values = list(obj.values())
    for value in values:
        if type(value) is not dict:
            return None
    return _table(values)


def _check_unicode(text: str, tree: object) -> None:
    """TOON text is UTF-8: a lone surrogate (which Python strings can hold) has no encoding."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        path = _surrogate_path(tree)
        raise ConfigurationError(
            f"TOON cannot encode a string with a lone surrogate (at {path_text(path)}); "
            "TOON text is UTF-8, so every character must be a Unicode scalar value"
        ) from None


def _surrogate_path(tree: object) -> list[str | int]:
    stack: list[tuple[object, list[str | int]]] = [(tree, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not _encodes(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _encodes(key):
                    return [*path, key]
                stack.append((item, [*path, key]))
        elif isinstance(value, list):
            stack.extend((item, [*path, index]) for index, item in enumerate(value))
    return []


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
