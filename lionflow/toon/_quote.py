"""When a TOON string or key is quoted, and how it is escaped (spec §7.1-§7.3, §11.1).

A value is written bare unless a decoder would read it back as something else or split it: it is
empty, has a leading or trailing space, is `true`/`false`/`null`, looks like a number (`42`, `05`, `+1`,
`1e-6`), contains `: " \\ [ ] { }`, a control character or the active delimiter, or starts with `-` or
`#`. A key is bare only if it matches `[A-Za-z_][A-Za-z0-9_.]*`. Quoted text escapes `\\ " \\n \\r \\t`,
and every other control character as `\\u00XX`; everything else stays literal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

DELIMITERS = (",", "|", "\t")

_NUMBER_LIKE = r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
# Anything a decoder would read as another type, or as structure, once the value stands bare.
_SPECIAL = r'[:"\\\[\]{}\x00-\x1f{delimiter}]'


def _special_pattern(delimiter: str, *, controls: str = "\\x00-\\x1f") -> re.Pattern[str]:
    """The characters that force quotes wherever they stand in a value."""
    special = _SPECIAL.replace("\\x00-\\x1f", controls)
    return re.compile(special.replace("{delimiter}", re.escape(delimiter) if delimiter != "\t" else ""))


_SPECIAL_IN_VALUE = {delimiter: _special_pattern(delimiter).search for delimiter in DELIMITERS}
# column_is_bare joins values with "\n" (and counts lines to catch a value holding one).
_SPECIAL_IN_COLUMN = {
    delimiter: _special_pattern(delimiter, controls="\\x00-\\x09\\x0b-\\x1f").search
    for delimiter in DELIMITERS
}
_LITERAL_OR_NUMBER = re.compile(rf"(?:true|false|null|{_NUMBER_LIKE})\Z").match
# A bare value may start with none of "-# "; one starting with these others may read as a literal or
# a number, and gets the full check.
_RISKY_FIRST = frozenset("-# tfn0123456789+")
# What a value may not start or end with, and the values that read as literals, as seen in "\n"-joined
# text; a value starting with a digit or "+" may look like a number and is checked on its own.
_BAD_EDGES = ("\n-", "\n#", "\n ", " \n", "\n\n", "\ntrue\n", "\nfalse\n", "\nnull\n")
_NUMBER_START = re.compile(r"\n[0-9+]").search

_ESCAPES = {code: f"\\u{code:04x}" for code in range(0x20)}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord('"'): '\\"', ord("\\"): "\\\\"})
_HAS_ESCAPE = re.compile(r'["\\\x00-\x1f]').search

_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z").match


def quote(text: str) -> str:
    """`text` as a quoted TOON string, escaped per §7.1."""
    if _HAS_ESCAPE(text) is None:
        return f'"{text}"'
    return '"' + text.translate(_ESCAPES) + '"'


def value_quoter(delimiter: str) -> Callable[[str], str]:
    """A function writing a string value as TOON, bare or quoted against `delimiter` (§7.2, §11.1)."""
    special = _SPECIAL_IN_VALUE[delimiter]
    risky = _RISKY_FIRST
    literal_or_number = _LITERAL_OR_NUMBER

    def write(text: str) -> str:
        # Cheapest tests first: this runs once per string value of the document.
        if not text or special(text) is not None or text[-1] == " ":
            return quote(text)
        first = text[0]
        if first in risky and (first in "-# " or literal_or_number(text) is not None):
            return quote(text)
        return text

    return write


def column_is_bare(values: list[str], delimiter: str) -> bool:
    """Whether every string in `values` may be written bare, answered by scans of the joined text.

    False may be a false alarm (a value starting with a digit); the caller then checks each value.
    """
    joined = "\n" + "\n".join(values) + "\n"
    if joined.count("\n") != len(values) + 1 or _SPECIAL_IN_COLUMN[delimiter](joined) is not None:
        return False
    for edge in _BAD_EDGES:
        if edge in joined:
            return False
    return _NUMBER_START(joined) is None


@lru_cache(maxsize=4096)
def format_key(key: str) -> str:
    """A key, entry key or field name as TOON: bare when it is an identifier, else quoted (§7.3)."""
    return key if _BARE_KEY(key) is not None else quote(key)
