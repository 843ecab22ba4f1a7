"""`PartialTOON`: a TOON document decoded while it arrives, in linear time.

Complete lines go to the same `LineDecoder` that `decode` runs, so the value is built in place and
`close()` returns what `decode` returns on the whole text (and raises what it raises). The last,
partial line adds only what no continuation can change (spec v4.0; see docs/toon.md):

- its indentation, once its first character shows it is content (not a blank line, a comment, or a
  tab), closes the scopes it is shallower than;
- a string value after ``key:`` (in an object, or as the first field of a ``- key:`` list item)
  grows as it is written: a quoted one as soon as its quote opens (a partial escape held back), an
  unquoted one once it can no longer be a number, ``true``, ``false``, ``null`` or ``[]`` (trailing
  spaces held back);
- nothing else: a number, literal, header, tabular row, keyed entry or bare list item appears when
  its line is complete, and a key never appears before its value's kind is known.

So a value, once shown, only grows: strings extend, containers gain items and keys. (Non-strict
mode's last-write-wins on a duplicate key is the one exception the spec makes.)

Each character of the partial line is looked at once: the scan state (indentation, quotes, the
first unquoted ``:`` or ``[``, the number-or-literal automaton, a pending escape) is kept between
feeds. Reading `value` joins a string still growing, so it costs the length of that string.

`feed` raises `ToonDecodeError` as soon as complete lines prove the text wrong (any error of a
complete line; a declared count not met once a dedent closes its array); `close` raises the rest
(counts of arrays open at the end, a root scalar followed by more, errors of the last line).
"""

from __future__ import annotations

import re
from typing import Any

from lionflow.errors import ToonDecodeError
from lionflow.toon._lines import LIST, NO_ROOT, OBJECT, SCALAR_ROOT, LineDecoder
from lionflow.toon._tokens import BadToken, ValuePrefix, parse_key

# Scan phases of the partial line.
_INDENT, _LEAD, _DASH, _GAP, _HEAD, _VALUE, _QUOTED, _AFTER, _UNQUOTED, _DEAD = range(10)
_HEAD_STOP = re.compile(r'[":\[]')
_QUOTE_STOP = re.compile(r'["\\]')
_SIMPLE_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")


class PartialTOON:
    """Feed TOON text with `feed`; read the value so far with `value`; `close` at the end.

    >>> partial = PartialTOON()
    >>> partial.feed("name: Ada Lov")
    >>> partial.value
    {'name': 'Ada Lov'}
    >>> partial.feed("elace\\nage: 3")
    >>> partial.value
    {'name': 'Ada Lovelace'}
    >>> partial.close()
    {'name': 'Ada Lovelace', 'age': 3}

    It reads like `lionflow.structured.PartialJSON` (`value`, `open_containers()`, `in_string`,
    `path_depth`, `revision`, `done`), so the partial pydantic builder works on it unchanged.
    """

    def __init__(self, *, indent: int = 2, strict: bool = True) -> None:
        self._decoder = LineDecoder(indent=indent, strict=strict)
        self._line: list[str] = []  # the partial line, in pieces
        self._line_length = 0
        self._started = False
        self._closed = False
        self._result: Any = None
        self._error: ToonDecodeError | None = None
        self._changes = 0
        self._reset()

    def _reset(self) -> None:
        self._phase = _INDENT
        self._spaces = 0
        self._depth = 0
        self._content_start = 0
        self._head_start = 0
        self._item = False  # the line starts with '- '
        self._in_quote = False  # in the head: inside a quoted key
        self._escape = False  # in the head: after a backslash
        self._target: dict[str, Any] | None = None  # the object the previewed string goes into
        self._items: list[Any] | None = None  # for '- key: ...': the list the new item goes into
        self._key = ""
        self._shown = False
        self._growing = False
        self._automaton = ValuePrefix()
        self._pieces: list[str] = []  # the string value so far
        self._pending = ""  # a partial escape of a quoted value
        self._dirty = False

    # -- reading -----------------------------------------------------------------------------------

    @property
    def value(self) -> Any:
        """The value the text so far implies: None until the root's kind is known."""
        if self._dirty and self._target is not None:
            text = "".join(self._pieces)
            self._pieces = [text]
            if self._phase == _UNQUOTED:
                text = text.rstrip(" ")
                if text.endswith("\r"):  # maybe half of a CRLF
                    text = text[:-1].rstrip(" ")
            self._target[self._key] = text
            self._dirty = False
        if self._closed:
            return self._result
        return self._decoder.root

    @property
    def revision(self) -> int:
        """Bumps whenever `value` (or the set of open containers) changes."""
        return self._decoder.revision + self._changes

    @property
    def done(self) -> bool:
        """Whether `close` has returned the whole value."""
        return self._closed

    @property
    def in_string(self) -> bool:
        """Whether the newest value of the innermost open container is a string still growing."""
        return self._growing and not self._closed

    @property
    def path_depth(self) -> int:
        """How many containers are open."""
        return len(self.open_containers())

    def open_containers(self) -> list[Any]:
        """The dicts and lists still being written, outermost first: each stays here until a dedent
        or the end proves it closed."""
        if self._closed:
            return []
        opened = [frame.container for frame in self._decoder.frames]
        if self._shown and self._items is not None:
            opened.append(self._target)
        return opened

    # -- feeding -----------------------------------------------------------------------------------

    def feed(self, text: str) -> None:
        """Read the next piece of text. Raises `ToonDecodeError` once complete lines prove it wrong."""
        if self._error is not None:
            raise self._error
        if self._closed:
            raise RuntimeError("feed() after close(): make a new PartialTOON")
        if not text:
            return
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        try:
            start = 0
            newline = text.find("\n")
            while newline >= 0:
                piece = text[start:newline]
                if self._line:
                    self._line.append(piece)
                    piece = "".join(self._line)
                self._end_line()
                self._decoder.push(piece)
                self._decoder.reuse = None
                start = newline + 1
                newline = text.find("\n", start)
            if start < len(text):
                rest = text[start:] if start else text
                offset = self._line_length
                self._line.append(rest)
                self._line_length += len(rest)
                self._scan(rest, offset)
        except ToonDecodeError as error:
            self._error = error
            raise

    def close(self) -> Any:
        """The whole value: exactly what `decode` returns on all the text fed (or its error)."""
        if self._error is not None:
            raise self._error
        if not self._closed:
            try:
                last = "".join(self._line) if self._line else None
                self._end_line()
                if last is not None:
                    self._decoder.push(last)
                self._result = self._decoder.finish()
            except ToonDecodeError as error:
                self._error = error
                raise
            self._closed = True
            self._changes += 1
        return self._result

    def _end_line(self) -> None:
        """Take back what the preview added: the complete line now adds it through the decoder."""
        if self._shown and self._target is not None:
            if self._items is not None:
                self._items.pop()
                self._target.clear()
                self._decoder.reuse = self._target  # the same dict, now filled by the decoder
            else:
                del self._target[self._key]
        self._line = []
        self._line_length = 0
        self._reset()

    # -- the partial line --------------------------------------------------------------------------

    def _scan(self, chunk: str, offset: int) -> None:
        i, n = 0, len(chunk)
        while i < n:
            phase = self._phase
            if phase == _DEAD:
                return
            if phase == _INDENT:
                j = i
                while j < n and chunk[j] == " ":
                    j += 1
                self._spaces += j - i
                i = j
                if i < n:
                    self._begin_content(chunk[i], offset + i)
            elif phase == _LEAD:
                if chunk[i] == "-":
                    self._phase = _DASH
                    i += 1
                else:
                    self._phase, self._head_start = _HEAD, offset + i
            elif phase == _DASH:
                if chunk[i] == " ":
                    self._phase, self._item = _GAP, True
                    i += 1
                else:
                    self._phase, self._head_start = _HEAD, self._content_start
            elif phase == _GAP:
                while i < n and chunk[i] == " ":
                    i += 1
                if i < n:
                    self._phase, self._head_start = _HEAD, offset + i
            elif phase == _HEAD:
                i = self._scan_head(chunk, i, offset)
            elif phase == _VALUE:
                while i < n and chunk[i] == " ":
                    i += 1
                if i < n:
                    if chunk[i] == '"':
                        self._phase = _QUOTED
                        self._show()
                        i += 1
                    elif chunk[i] == "\r":
                        self._phase = _DEAD  # "key: \r" may be a CRLF: let the line decide
                    else:
                        self._phase = _UNQUOTED
            elif phase == _QUOTED:
                i = self._scan_quoted(chunk, i)
            elif phase == _AFTER:
                while i < n and chunk[i] in " \r":
                    i += 1
                if i < n:
                    self._phase = _DEAD  # text after the closing quote: the line will fail
            else:
                self._scan_unquoted(chunk, i)
                return

    def _begin_content(self, first: str, at: int) -> None:
        decoder = self._decoder
        depth = decoder.depth_of(self._spaces)
        if first in "#\t\r" or depth is None or decoder.ignore_rest or decoder.root_state == SCALAR_ROOT:
            self._phase = _DEAD
            return
        if decoder.root_state != NO_ROOT:
            # a content line at this depth proves every deeper scope closed
            decoder.close_to(depth)
        self._depth, self._content_start, self._phase = depth, at, _LEAD

    def _scan_head(self, chunk: str, i: int, offset: int) -> int:
        """Up to the first unquoted ':' (a key-value line) or '[' (maybe a header: not previewed)."""
        n = len(chunk)
        while i < n:
            if self._in_quote:
                if self._escape:
                    self._escape = False
                    i += 1
                    continue
                match = _QUOTE_STOP.search(chunk, i)
                if match is None:
                    return n
                i = match.end()
                if match.group() == "\\":
                    self._escape = True
                else:
                    self._in_quote = False
                continue
            match = _HEAD_STOP.search(chunk, i)
            if match is None:
                return n
            i = match.end()
            stop = match.group()
            if stop == '"':
                self._in_quote = True
            elif stop == "[":
                self._phase = _DEAD
                return n
            else:
                self._on_colon(offset + match.start())
                return i
        return n

    def _on_colon(self, colon: int) -> None:
        self._phase = _DEAD
        decoder = self._decoder
        line = "".join(self._line)  # once per line
        try:
            key = parse_key(line[self._head_start : colon])
        except BadToken:
            return
        if decoder.root_state == NO_ROOT:
            if self._item or self._depth:
                return
            decoder.open_root_object()  # a key-value line first: the root is an object (§5)
        frames = decoder.frames
        if not frames:
            return
        frame = frames[-1]
        if frame.depth != self._depth or (decoder.blank_line and frame.span and decoder.strict):
            return  # the line will fail, or belongs to no scope
        if frame.kind == OBJECT and not self._item:
            if key in frame.container:
                return  # a duplicate: an error, or (non-strict) a value replaced
            self._target = frame.container
        elif frame.kind == LIST and self._item:
            self._target, self._items = {}, frame.container
        else:
            return
        self._key = key
        self._phase = _VALUE

    def _show(self) -> None:
        """The value is a string from here on: put its key (and its list item) in place."""
        assert self._target is not None
        if self._items is not None:
            self._items.append(self._target)
        self._target[self._key] = ""
        self._shown = self._growing = self._dirty = True
        self._changes += 1

    def _scan_quoted(self, chunk: str, i: int) -> int:
        n = len(chunk)
        while i < n:
            if self._pending:
                if len(self._pending) == 1:
                    self._pending += chunk[i]  # which escape it is
                    i += 1
                    continue
                need = 6 if self._pending[1] == "u" else 2
                piece = chunk[i : i + need - len(self._pending)]
                self._pending += piece
                i += len(piece)
                if len(self._pending) < need:
                    return n
                escape, self._pending = self._pending, ""
                if not self._unescape(escape):
                    return n
                continue
            match = _QUOTE_STOP.search(chunk, i)
            end = n if match is None else match.start()
            if end > i:
                self._pieces.append(chunk[i:end])
                self._dirty = True
                self._changes += 1
            if match is None:
                return n
            if match.group() == '"':
                self._phase = _AFTER
                self._growing = False
                self._changes += 1
                return end + 1
            self._pending = "\\"
            i = end + 1
        return n

    def _unescape(self, escape: str) -> bool:
        kind = escape[1]
        if kind in _SIMPLE_ESCAPES:
            self._pieces.append(_SIMPLE_ESCAPES[kind])
        elif (
            kind == "u" and all(d in _HEX for d in escape[2:]) and not 0xD800 <= int(escape[2:], 16) <= 0xDFFF
        ):
            self._pieces.append(chr(int(escape[2:], 16)))
        else:
            self._phase = _DEAD  # a bad escape: the complete line raises it
            self._growing = False
            return False
        self._dirty = True
        self._changes += 1
        return True

    def _scan_unquoted(self, chunk: str, i: int) -> None:
        self._pieces.append(chunk[i:] if i else chunk)
        if self._shown:
            self._dirty = True
            self._changes += 1
            return
        alive = self._automaton.alive
        for char in chunk[i:]:
            if not alive(char):
                self._show()
                return
