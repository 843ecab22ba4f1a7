"""TOON tokens (spec v4.0 §4, §6, §7, §11): primitives, quoted strings, delimited splits and headers.

Everything here works on one line's content (indentation removed) and raises `BadToken` with the
offset of the offending character in that content; the line decoder turns it into a
`ToonDecodeError` with the line and column.

Number policy (§4, which asks for one to be documented): a token with neither fraction nor exponent
is an `int` (up to Python's limit on converted digits, 4300 by default); any other number token is
a `float` (``-0.0`` reads as ``0.0``); a token beyond the float range (``1e400``) or that limit is an
error. This is also what `toons` does, so the compiled and the pure decoders agree.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

# One header field: its name, and its nested field group (None for a leaf).
Field = tuple[str, "list[Field] | None"]

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?P<float>(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)")
_QUOTED_SPAN = re.compile(r'"(?:[^"\\]|\\.)*"?')
_BRACKET = re.compile(r"(0|[1-9][0-9]*)(:?)([\t|]?)")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
_NUMBER_START = frozenset("-0123456789")
DELIMITERS = (",", "\t", "|")


class BadToken(Exception):
    """A token is malformed; `offset` is where, within the text handed to the function."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class Header(NamedTuple):
    """An array or keyed header (§6): ``key[N<delim>]{fields}:`` with what follows the colon."""

    key: str | None
    length: int
    delimiter: str
    keyed: bool
    fields: list[Field] | None
    rest: str


def find_unquoted(text: str, target: str, start: int = 0) -> int:
    """The index of the first `target` outside double quotes, or -1."""
    index = start
    while True:
        found = text.find(target, index)
        if found < 0:
            return -1
        quote = text.find('"', index, found)
        if quote < 0:
            return found
        span = _QUOTED_SPAN.match(text, quote)
        assert span is not None
        if not span.group().endswith('"') or span.end() - quote < 2:
            return -1  # an unterminated string runs to the end of the line
        index = span.end()


def split_delimited(text: str, delimiter: str) -> list[str]:
    """Split on unquoted delimiters, each token trimmed of U+0020 (§11.2); no tokens for blank text."""
    if '"' not in text:
        if not text.strip(" "):
            return []
        return [token.strip(" ") for token in text.split(delimiter)]
    if not text.strip(" "):
        return []
    tokens = []
    start = 0
    while True:
        index = find_unquoted(text, delimiter, start)
        if index < 0:
            tokens.append(text[start:].strip(" "))
            return tokens
        tokens.append(text[start:index].strip(" "))
        start = index + 1


def parse_quoted(text: str, start: int) -> tuple[str, int]:
    """The string quoted at ``text[start] == '"'`` (§7.1), and the index just past its closing quote."""
    index = start + 1
    close = text.find('"', index)
    backslash = text.find("\\", index)
    if close >= 0 and (backslash < 0 or backslash > close):
        return text[index:close], close + 1  # no escapes: the common case
    parts: list[str] = []
    length = len(text)
    while index < length:
        char = text[index]
        if char == '"':
            return "".join(parts), index + 1
        if char != "\\":
            parts.append(char)
            index += 1
            continue
        escape = text[index + 1 : index + 2]
        if escape in _ESCAPES and escape:
            parts.append(_ESCAPES[escape])
            index += 2
        elif escape == "u":
            digits = text[index + 2 : index + 6]
            if len(digits) != 4 or not all(d in _HEX for d in digits):
                raise BadToken(f"invalid escape \\u{digits}: \\u takes four hex digits", index)
            code = int(digits, 16)
            if 0xD800 <= code <= 0xDFFF:
                raise BadToken(f"invalid escape \\u{digits}: a surrogate is not a character", index)
            parts.append(chr(code))
            index += 6
        elif not escape:
            break
        else:
            raise BadToken(f'invalid escape \\{escape}: only \\\\ \\" \\n \\r \\t \\uXXXX exist', index)
    raise BadToken("unterminated string: the closing quote is missing", start)


def _whole_quoted(token: str, offset: int) -> str:
    try:
        value, end = parse_quoted(token, 0)
    except BadToken as error:
        raise BadToken(error.message, error.offset + offset) from None
    if end != len(token):
        raise BadToken("characters after the closing quote", offset + end)
    return value


def parse_key(token: str, offset: int = 0) -> str:
    """A key (§7.4): a quoted key is unescaped; any other token, trimmed, is the key as written."""
    stripped = token.strip(" ")
    if stripped.startswith('"'):
        return _whole_quoted(stripped, offset + len(token) - len(token.lstrip(" ")))
    return stripped


def parse_primitive(token: str, offset: int = 0) -> Any:
    """A primitive (§4): a quoted string, true/false/null, a number, or else the token as a string.
    `token` is already trimmed."""
    if not token:
        return ""
    first = token[0]
    if first == '"':
        return _whole_quoted(token, offset)
    if first in _NUMBER_START:
        match = _NUMBER.fullmatch(token)
        if match is None:
            return token
        if not match.group("float"):
            try:
                return int(token)
            except ValueError:  # longer than Python converts (sys.get_int_max_str_digits)
                raise BadToken(f"integer of {len(token)} digits is out of range", offset) from None
        number = float(token)
        if math.isinf(number):
            raise BadToken(f"number {token} is out of range", offset)
        return number + 0.0  # -0.0 reads as 0.0
    if first in "tfn" and token in _LITERALS:
        return _LITERALS[token]
    return token


def try_header(content: str, *, strict: bool = True) -> Header | None:
    """`content` as an array or keyed header (§6), or None when it is not one. A malformed header
    raises `BadToken`: strict decoders report it, others read the line as key-value. A repeated
    field name is malformed only when `strict` (otherwise the last one wins, §14.3)."""
    if content.startswith('"'):
        try:
            key, bracket = parse_quoted(content, 0)
        except BadToken:
            return None
        if bracket >= len(content) or content[bracket] != "[":
            return None
        if find_unquoted(content, ":", bracket) < 0:
            return None
        header_key: str | None = key
    else:
        bracket = content.find("[")
        if bracket < 0:
            return None
        colon = find_unquoted(content, ":")
        bracket = find_unquoted(content, "[")
        if bracket < 0 or colon < 0 or colon < bracket:
            return None
        header_key = content[:bracket] or None
        # §6 forbids whitespace between a key and its '[' (`foo [2]:`); inside the key it is part
        # of the literal token (§7.4: `a b[2]:` has the key "a b").
        if header_key is not None and header_key[-1] in " \t":
            raise BadToken(
                f"whitespace before the '[' of the array header {content[: bracket + 1]!r}", bracket - 1
            )
    return _header_after_key(content, bracket, header_key, strict)


def _header_after_key(content: str, bracket: int, key: str | None, strict: bool) -> Header:
    close = content.find("]", bracket)
    if close < 0:
        raise BadToken("the '[' of the array header is never closed", bracket)
    match = _BRACKET.fullmatch(content, bracket + 1, close)
    if match is None:
        raise BadToken(
            f"malformed length {content[bracket : close + 1]!r}: write [N], [N|], [N<tab>] or [N:] for keyed",
            bracket,
        )
    delimiter = match.group(3) or ","
    position = close + 1
    fields = None
    if position < len(content) and content[position] == "{":
        fields, position = _fields(content, position, delimiter, strict)
    if position >= len(content) or content[position] != ":":
        raise BadToken("expected ':' right after the array header", position)
    rest = content[position + 1 :].strip(" ")
    keyed = bool(match.group(2))
    if keyed and fields is None:
        raise BadToken("a keyed header [N:] needs a field list {...}", bracket)
    if fields is not None and rest:
        raise BadToken("nothing may follow the ':' of a header with fields", position + 1)
    return Header(key, int(match.group(1)), delimiter, keyed, fields, rest)


def _fields(text: str, position: int, delimiter: str, strict: bool) -> tuple[list[Field], int]:
    """The field list at ``text[position] == '{'``, nested groups included, and the index past it."""
    position += 1
    fields: list[Field] = []
    names: set[str] = set()
    while True:
        start = position
        # §12: spaces around a token are tolerated, so around a quoted name too (an unquoted one
        # is trimmed below); a tab is not a space here, as in rows (§11.2 trims U+0020 only).
        quote = _skip_spaces(text, position)
        if quote < len(text) and text[quote] == '"':
            name, position = parse_quoted(text, quote)
            position = _skip_spaces(text, position)
        else:
            position = _unquoted_name_end(text, position, delimiter)
            name = text[start:position].strip(" ")
            if not name:
                raise BadToken("empty field name in the field list", start)
            bare = _QUOTED_SPAN.sub("", name) if '"' in name else name
            if any(d in bare for d in DELIMITERS):
                raise BadToken(f"field {name!r} holds another delimiter than the header's", start)
        group = None
        if position < len(text) and text[position] == "{":
            group, position = _fields(text, position, delimiter, strict)
            position = _skip_spaces(text, position)
        if strict and name in names:
            raise BadToken(f"field {name!r} appears twice", start)
        names.add(name)
        fields.append((name, group))
        if position >= len(text):
            raise BadToken("the '{' of the field list is never closed", start)
        if text[position] == delimiter:
            position += 1
        elif text[position] == "}":
            return fields, position + 1
        else:
            raise BadToken(f"unexpected {text[position]!r} in the field list", position)


def _unquoted_name_end(text: str, position: int, delimiter: str) -> int:
    """Where the unquoted field name at `position` ends: at a brace or the delimiter outside quotes.
    An unquoted key is the token as written (§7.4), so `name"x,y"` is one name, as for a key before
    a ':' (`find_unquoted`) and as `toons` and the TS reference read it."""
    while position < len(text):
        char = text[position]
        if char == '"':
            span = _QUOTED_SPAN.match(text, position)
            assert span is not None
            if not span.group().endswith('"') or span.end() - position < 2:
                raise BadToken("unterminated string: the closing quote is missing", position)
            position = span.end()
        elif char in "{}" or char == delimiter:
            return position
        else:
            position += 1
    return position


def _skip_spaces(text: str, position: int) -> int:
    """The index of the first character at or after `position` that is not U+0020."""
    while position < len(text) and text[position] == " ":
        position += 1
    return position


def count_leaves(fields: list[Field]) -> int:
    """How many cells a row of this header holds."""
    return sum(1 if group is None else count_leaves(group) for _, group in fields)


# States of `ValuePrefix`.
_START, _MINUS, _ZERO, _INT, _DOT, _FRAC, _EXP_MARK, _EXP_SIGN, _EXP, _LITERAL, _TRAIL, _STRING = range(12)
_LITERAL_WORDS = {"t": "true", "f": "false", "n": "null", "[": "[]"}


class ValuePrefix:
    """An automaton over an unquoted value as it arrives, one character at a time: alive while the
    value may still end up a number, true, false, null or [] (§4), so that a reader does not show
    it as a string yet; once dead, the value is a string whatever follows."""

    __slots__ = ("_state", "_word", "_word_at")

    def __init__(self) -> None:
        self._state = _START
        self._word = ""
        self._word_at = 0

    def alive(self, char: str) -> bool:
        """Take the next character; False once the value can only be a string."""
        state = self._state
        digit = "0" <= char <= "9"
        if char == " " or char == "\r":
            self._state = _TRAIL
            return True
        if state == _TRAIL:
            nxt = _STRING
        elif state == _START:
            if char in _LITERAL_WORDS:
                self._word, self._word_at = _LITERAL_WORDS[char], 1
                nxt = _LITERAL
            else:
                nxt = _MINUS if char == "-" else _ZERO if char == "0" else _INT if digit else _STRING
        elif state == _LITERAL:
            if self._word_at < len(self._word) and char == self._word[self._word_at]:
                self._word_at += 1
                return True
            nxt = _STRING
        elif state == _MINUS:
            nxt = _ZERO if char == "0" else _INT if digit else _STRING
        elif state in (_ZERO, _INT, _FRAC):
            if digit and state != _ZERO:
                nxt = state
            elif char == "." and state != _FRAC:
                nxt = _DOT
            else:
                nxt = _EXP_MARK if char in "eE" else _STRING
        elif state == _DOT:
            nxt = _FRAC if digit else _STRING
        elif state == _EXP_MARK:
            nxt = _EXP_SIGN if char in "+-" else _EXP if digit else _STRING
        else:  # _EXP_SIGN, _EXP
            nxt = _EXP if digit else _STRING
        self._state = nxt
        return nxt != _STRING
