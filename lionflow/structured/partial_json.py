"""`PartialJSON`: an incremental JSON parser fed text deltas, in linear time.

Each character is looked at once: runs of plain string characters are consumed with ``str.find``
and numbers with a regular expression, so the Python loop turns only on structure. At any point
`value` is what the received prefix implies:

- a string being written is there as received so far, escapes decoded; a partial escape (``\\``,
  ``\\u00``, or a high surrogate waiting for its low half) is held back;
- numbers, ``true``, ``false`` and ``null`` appear only once complete (a number at the very end may
  still grow, so it is left out); a key appears with its value, not before;
- an emitted value never changes except by a growing string or a growing container.

Text before the first ``{`` or ``[`` (a preamble, a Markdown code fence) and after the document
ends is ignored. Invalid JSON raises `PartialJSONError` with the position; `value` keeps the last
partial value.
"""

from __future__ import annotations

import re
from typing import Any

from lionflow.errors import PartialJSONError

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUMBER_CHARS = frozenset("0123456789+-.eE")
_STRING_STOP = re.compile(r'["\\\x00-\x1f]')
_WHITESPACE = " \t\n\r"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}

# What the parser expects next, inside a container or at the top.
_VALUE = 0  # a value (after '[', ',' in an array, or ':' in an object)
_VALUE_OR_CLOSE = 1  # a value or ']' (just after '[')
_KEY = 2  # a key (after ',' in an object)
_KEY_OR_CLOSE = 3  # a key or '}' (just after '{')
_COLON = 4
_COMMA_OR_CLOSE = 5
_DONE = 6  # the top-level value is complete


class PartialJSON:
    """Feed text deltas with `feed`; read the partial value with `value`.

    >>> parser = PartialJSON()
    >>> parser.feed('{"name": "bil')
    >>> parser.value
    {'name': 'bil'}
    >>> parser.feed('bo", "age": 11')
    >>> parser.value
    {'name': 'bilbo'}
    >>> parser.feed('1}')
    >>> parser.value
    {'name': 'bilbo', 'age': 111}
    """

    def __init__(self) -> None:
        self._root: Any = None
        self._started = False
        # Open containers, outermost first: [container, is_object, pending key].
        self._stack: list[list[Any]] = []
        self._expect = _VALUE
        self.fed = 0  # characters fed so far
        self._pending = ""  # held-back input: a partial escape, number or literal
        # The string being read: its pieces, whether it is a key, and a held-back high surrogate.
        self._string: list[str] | None = None
        self._string_is_key = False
        self._surrogate = ""
        self._plain = False  # a string value is being written, nothing held back: see `feed`
        self.revision = 0  # bumps whenever `value` changes
        # bumps whenever a value is added, a string value ends or a container closes, not when a
        # string grows: while it stands still, the one thing changing is the string being written
        # (`PartialBuilder` and `PartialObjects` read it)
        self.structure = 0
        # where the newest string value began (the offset of its first character): while it is being
        # written, ``fed - string_start`` is about its length (escapes count as written)
        self.string_start = 0
        self.end: int | None = None  # where the document ended: the offset just past its last character
        self.start: int | None = None  # where the document began: the offset of its first '{' or '['

    # -- reading -----------------------------------------------------------------------------------

    @property
    def value(self) -> Any:
        """The partial value so far: None before the first ``{`` or ``[``."""
        if self._string is not None and not self._string_is_key:
            self._store_string(final=False)
        return self._root

    @property
    def done(self) -> bool:
        """Whether the top-level value is complete."""
        return self._expect == _DONE

    @property
    def in_string(self) -> bool:
        """Whether a string value is being written (it is the newest value of the innermost container)."""
        return self._string is not None and not self._string_is_key

    @property
    def plain(self) -> bool:
        """Whether a string value is being written with nothing held back (no partial escape, no
        high surrogate waiting for its low half): a delta without ``"``, ``\\`` or unprintable
        characters then only grows it."""
        return self._plain

    @property
    def path_depth(self) -> int:
        """How many containers are open."""
        return len(self._stack)

    def open_containers(self) -> list[Any]:
        """The containers still being written, outermost first."""
        return [frame[0] for frame in self._stack]

    @property
    def root(self) -> Any:
        """The value so far, without bringing a string still being written up to date (which
        `value` does, at the cost of joining its pieces): for reading what is already complete."""
        return self._root

    def complete_count(self, array: list[Any]) -> int:
        """How many elements of `array`, a list inside the value, are complete: all of them once it
        has closed; while it is open, all but the newest one unless that one has ended too (a
        nested container still open, a string still being written). A number or literal at the end
        is not in the list until it has ended, so it is never counted early."""
        stack = self._stack
        for depth in range(len(stack) - 1, -1, -1):
            if stack[depth][0] is array:
                innermost = depth == len(stack) - 1
                if innermost and self._string is None and self._expect in (_COMMA_OR_CLOSE, _VALUE):
                    return len(array)
                return max(len(array) - 1, 0)
        return len(array)

    # -- feeding -----------------------------------------------------------------------------------

    def feed(self, text: str) -> None:
        """Parse `text`, the next delta. Raises `PartialJSONError` on invalid JSON."""
        if not text:
            return
        if self._plain and '"' not in text and "\\" not in text and text.isprintable():
            # the common delta: more plain characters of the string value being written (a control
            # character, and a few printable-looking others, take the long way)
            self._string.append(text)  # type: ignore[union-attr]
            self.fed += len(text)
            self.revision += 1
            return
        if self._pending:
            start = self.fed - len(self._pending)
            text, self._pending = self._pending + text, ""
        else:
            start = self.fed
        self.fed = start + len(text)
        try:
            self._parse(text, start)
        finally:
            # whether the next delta may take the short way: a string value is being written, with
            # no partial escape or high surrogate held back
            self._plain = (
                self._string is not None
                and not self._string_is_key
                and not self._pending
                and not self._surrogate
            )

    def _error(self, message: str, position: int) -> PartialJSONError:
        return PartialJSONError(message, position)

    def _parse(self, text: str, base: int) -> None:
        i, n = 0, len(text)
        while i < n:
            if self._string is not None:
                i = self._read_string(text, i, base)
                continue
            char = text[i]
            if char in _WHITESPACE:
                i += 1
                continue
            expect = self._expect
            if not self._started:
                if char in "{[":
                    self._started = True
                    self.start = base + i
                    self._open(char == "{")
                # anything before the document (a preamble, a code fence) is ignored
                i += 1
                continue
            if expect == _DONE:
                return  # text after the document (a closing code fence) is ignored
            if expect in (_VALUE, _VALUE_OR_CLOSE):
                if char == "]" and expect == _VALUE_OR_CLOSE:
                    self._close(False, base + i)
                    i += 1
                elif char == '"':
                    self._start_string(is_key=False)
                    self.string_start = base + i + 1
                    i += 1
                elif char in "{[":
                    self._open(char == "{")
                    i += 1
                elif char == "-" or "0" <= char <= "9":
                    i = self._read_number(text, i, base)
                elif char in _LITERALS:
                    i = self._read_literal(text, i, base)
                else:
                    raise self._error(f"expected a value, found {char!r}", base + i)
            elif expect in (_KEY, _KEY_OR_CLOSE):
                if char == '"':
                    self._start_string(is_key=True)
                elif char == "}" and expect == _KEY_OR_CLOSE:
                    self._close(True, base + i)
                else:
                    raise self._error(f"expected a key, found {char!r}", base + i)
                i += 1
            elif expect == _COLON:
                if char != ":":
                    raise self._error(f"expected ':', found {char!r}", base + i)
                self._expect = _VALUE
                i += 1
            else:  # _COMMA_OR_CLOSE
                frame = self._stack[-1]
                if char == ",":
                    self._expect = _KEY if frame[1] else _VALUE
                elif char == ("}" if frame[1] else "]"):
                    self._close(frame[1], base + i)
                else:
                    raise self._error(
                        f"expected ',' or {'}' if frame[1] else ']'!r}, found {char!r}", base + i
                    )
                i += 1

    # -- containers --------------------------------------------------------------------------------

    def _put(self, value: Any) -> None:
        """Place a complete or starting value into the innermost container (or as the root)."""
        self.revision += 1
        self.structure += 1
        if not self._stack:
            self._root = value
            return
        frame = self._stack[-1]
        if frame[1]:
            frame[0][frame[2]] = value
        else:
            frame[0].append(value)

    def _open(self, is_object: bool) -> None:
        container: Any = {} if is_object else []
        self._put(container)
        self._stack.append([container, is_object, None])
        self._expect = _KEY_OR_CLOSE if is_object else _VALUE_OR_CLOSE

    def _close(self, is_object: bool, position: int) -> None:
        if not self._stack or self._stack[-1][1] != is_object:
            raise self._error(f"unexpected {'}' if is_object else ']'!r}", position)
        self._stack.pop()
        self.structure += 1
        if not self._stack:
            self.end = position + 1
        self._after_value()

    def _after_value(self) -> None:
        self._expect = _COMMA_OR_CLOSE if self._stack else _DONE

    # -- strings -----------------------------------------------------------------------------------

    def _start_string(self, *, is_key: bool) -> None:
        self._string = []
        self._string_is_key = is_key
        if not is_key:
            self._put("")  # the value exists from its opening quote, empty so far

    def _store_string(self, *, final: bool) -> None:
        assert self._string is not None
        text = "".join(self._string)
        if final and self._surrogate:
            text += self._surrogate  # a lone high surrogate, as json.loads keeps it
        self._string[:] = [text] if text else []
        frame = self._stack[-1] if self._stack else None
        if frame is None:
            self._root = text
        elif frame[1]:
            frame[0][frame[2]] = text
        else:
            frame[0][-1] = text

    def _read_string(self, text: str, i: int, base: int) -> int:
        pieces = self._string
        assert pieces is not None
        n = len(text)
        while i < n:
            # one search finds where the plain run ends: a quote, an escape, or a control character
            found = _STRING_STOP.search(text, i)
            stop = -1 if found is None else found.start()
            if stop >= 0 and text[stop] < " ":
                if self._surrogate:
                    pieces.append(self._surrogate)
                    self._surrogate = ""
                if stop > i:  # the value keeps the text before it, however the deltas were split
                    pieces.append(text[i:stop])
                    if not self._string_is_key:
                        self.revision += 1
                raise self._error("control character in a string", base + stop)
            end = n if stop < 0 else stop
            if end > i:
                if self._surrogate:
                    pieces.append(self._surrogate)
                    self._surrogate = ""
                pieces.append(text[i:end])
                if not self._string_is_key:
                    self.revision += 1
                i = end
            if stop < 0:
                return n
            if text[stop] == '"':
                self._end_string()
                return stop + 1
            slash = stop
            # an escape
            if slash + 1 >= n:
                self._pending = text[slash:]
                return n
            kind = text[slash + 1]
            if kind == "u":
                if slash + 6 > n:
                    self._pending = text[slash:]
                    return n
                digits = text[slash + 2 : slash + 6]
                try:
                    code = int(digits, 16)
                except ValueError:
                    raise self._error(f"bad \\u escape {digits!r}", base + slash) from None
                char = chr(code)
                if 0xD800 <= code <= 0xDBFF:
                    if self._surrogate:
                        pieces.append(self._surrogate)
                    self._surrogate = char  # wait for the low half
                    i = slash + 6
                    continue
                if 0xDC00 <= code <= 0xDFFF and self._surrogate:
                    high = ord(self._surrogate)
                    char = chr(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00))
                    self._surrogate = ""
                i = slash + 6
            else:
                char = _ESCAPES.get(kind, "")
                if not char:
                    raise self._error(f"bad escape \\{kind}", base + slash)
                i = slash + 2
            if self._surrogate:
                pieces.append(self._surrogate)
                self._surrogate = ""
            pieces.append(char)
            if not self._string_is_key:
                self.revision += 1
        return i

    def _end_string(self) -> None:
        pieces = self._string
        assert pieces is not None
        if self._string_is_key:
            if self._surrogate:
                pieces.append(self._surrogate)
                self._surrogate = ""
            self._stack[-1][2] = "".join(pieces)
            self._expect = _COLON
        else:
            self._store_string(final=True)
            self._surrogate = ""
            self.revision += 1
            self.structure += 1
            self._after_value()
        self._string = None

    # -- numbers and literals ----------------------------------------------------------------------

    def _read_number(self, text: str, i: int, base: int) -> int:
        end = i
        n = len(text)
        while end < n and text[end] in _NUMBER_CHARS:
            end += 1
        if end == n:
            self._pending = text[i:]  # it may still grow: left out until it ends
            return n
        token = text[i:end]
        if _NUMBER.fullmatch(token) is None:
            raise self._error(f"bad number {token!r}", base + i)
        self._put(float(token) if any(c in token for c in ".eE") else int(token))
        self._after_value()
        return end

    def _read_literal(self, text: str, i: int, base: int) -> int:
        word, value = _LITERALS[text[i]]
        available = text[i : i + len(word)]
        if not word.startswith(available):
            raise self._error(f"expected {word!r}", base + i)
        if len(available) < len(word):
            self._pending = available
            return len(text)
        self._put(value)
        self._after_value()
        return i + len(word)
