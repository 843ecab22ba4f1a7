"""`decode`: a whole TOON document (spec v4.0) to Python values.

With the optional extra ``lionflow[toon]`` installed, a whole document in strict mode is read by
`toons` (Rust, conformant to the spec), several times faster than Python can; the result is the
same, since the pure decoder follows the same number policy. Whenever `toons` refuses a document,
the pure decoder reads it again, so the error raised is always our `ToonDecodeError` with line and
column (and where the two disagree about validity, the pure decoder, written from the spec, wins).
Non-strict mode always uses the pure decoder: its leniencies are ours, documented in
`lionflow.toon._lines`.
"""

from __future__ import annotations

import re
from typing import Any

from lionflow.errors import ToonDecodeError
from lionflow.toon._lines import LineDecoder

# Documents `toons` (0.9) accepts although the spec refuses them in strict mode, found by testing it
# against the pure decoder: a blank line followed by more content (§12: inside a list item's span it
# is an error, which toons checks only at the top level), a ':' or '[' inside a field list (§6:
# nothing may follow a nested group; toons reads `{[1]{a}:}` as one field name), and a tab between a
# key and its '[' (§6). Such documents go to the pure decoder, so decode() always agrees with
# PartialTOON; encoders never write any of them.
_LENIENT_IN_TOONS = re.compile(
    r"\n[ \t\r]*\n[ \t\r]*\S"  # a blank line, then more content
    r"|\[[0-9]+:?[|\t]?\]\{[^\n:\[]*(?:\[|:(?![ \t\r]*(?:\n|$)))"  # '[' or ':' in a field list
    r"|\t\[[0-9]"  # a tab before a bracket segment (toons keeps it in the key)
)


def decode(text: str | bytes, *, indent: int = 2, strict: bool = True) -> Any:
    """Decode a TOON document: a dict, list or primitive.

    `text` may be UTF-8 bytes. `indent` is the number of spaces per level; `strict` enforces every
    rule of the spec's §14 (counts, widths, indentation, blank lines, duplicate keys). Raises
    `ToonDecodeError` (a `ValueError`) with `.line` and `.column`.

    >>> decode("users[2]{id,name}:\\n  1,Ada\\n  2,Bob")
    {'users': [{'id': 1, 'name': 'Ada'}, {'id': 2, 'name': 'Bob'}]}
    """
    text = _as_text(text)
    LineDecoder(indent=indent, strict=strict)  # validates the options before anything runs
    if strict and not _LENIENT_IN_TOONS.search(text):
        try:
            import toons
        except ImportError:
            pass
        else:
            try:
                return toons.loads(text, strict=True, indent_size=indent)
            except Exception:
                pass  # the pure decoder below says what is wrong, and where
    return _decode_pure(text, indent=indent, strict=strict)


def _decode_pure(text: str | bytes, *, indent: int = 2, strict: bool = True) -> Any:
    """The pure-Python decoder: the same line decoder `PartialTOON` runs."""
    text = _as_text(text)
    if text.startswith("\ufeff"):
        text = text[1:]
    decoder = LineDecoder(indent=indent, strict=strict)
    push = decoder.push
    for line in text.split("\n"):
        push(line)
    return decoder.finish()


def _as_text(text: str | bytes) -> str:
    if isinstance(text, str):
        return text
    if not isinstance(text, bytes | bytearray | memoryview):
        raise TypeError(f"decode() takes str or bytes, not {type(text).__name__}")
    data = bytes(text)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        raise ToonDecodeError(
            f"the bytes are not UTF-8 ({error.reason})",
            line=data.count(b"\n", 0, error.start) + 1,
            column=error.start - line_start + 1,
        ) from None
