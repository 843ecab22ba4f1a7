"""`LineDecoder`: TOON (spec v4.0) decoded one complete line at a time, the value built in place.

Both `decode` (every line, then `finish`) and `PartialTOON` (lines as they complete) run this one
class. It keeps a stack of open scopes (`Frame`): the root object, nested objects, list-form arrays,
tabular rows and keyed entries, each with the depth its content lines stand at. A line first closes
the scopes it is shallower than (`close_to`), then goes to the innermost scope left. Containers
enter their parent as soon as their header line is read and are filled in place, so a reader of
`root` sees them grow; a frame leaves the stack only when a dedent or the end proves it closed.

Non-strict mode (§14): counts and widths are not checked, duplicates resolve last-write-wins, depth
is ``floor(spaces / indent)`` plus one per leading tab, blank lines in spans are skipped, a line
deeper than its scope allows is skipped when it has a colon, a malformed header is read as a
key-value line, and whatever follows a complete root array is ignored.
"""

from __future__ import annotations

from typing import Any

from lionflow.errors import ToonDecodeError
from lionflow.toon._tokens import (
    BadToken,
    Field,
    Header,
    count_leaves,
    find_unquoted,
    parse_key,
    parse_primitive,
    split_delimited,
    try_header,
)

# Frame kinds: what the lines at the frame's depth are.
OBJECT, LIST, ROWS, ENTRIES = 0, 1, 2, 3
# Root states: nothing read yet, a lone scalar line (valid only if it stays alone), an object,
# an array or keyed root (nothing may follow it).
NO_ROOT, SCALAR_ROOT, OBJECT_ROOT, ARRAY_ROOT = 0, 1, 2, 3
_KINDS = {LIST: "list items", ROWS: "rows", ENTRIES: "entries"}


class Frame:
    """An open scope: its container and the depth its content lines stand at."""

    __slots__ = (
        "column",
        "container",
        "count",
        "delimiter",
        "depth",
        "fields",
        "kind",
        "leaves",
        "length",
        "line",
        "span",
    )

    def __init__(self, kind: int, container: Any, depth: int, span: bool, line: int, column: int) -> None:
        self.kind = kind
        self.container = container
        self.depth = depth
        # Inside a header span (§12) a blank line before more content is a strict error.
        self.span = span
        self.line = line  # where the scope was opened, for count errors
        self.column = column
        self.length = -1  # the declared [N]
        self.count = 0
        self.delimiter = ","
        self.fields: list[Field] = []
        self.leaves = 0


class LineDecoder:
    """Push complete lines (without their newline) with `push`; `finish` returns the value."""

    def __init__(self, *, indent: int = 2, strict: bool = True) -> None:
        if isinstance(indent, bool) or not isinstance(indent, int) or indent < 1:
            raise ValueError(f"indent must be a positive int, not {indent!r}")
        self.indent = indent
        self.strict = strict
        self.frames: list[Frame] = []
        self.root: Any = None
        self.root_state = NO_ROOT
        self.line = 0  # the number of the line being read (1-based)
        self.revision = 0  # bumps whenever `root` or the open scopes change
        self.blank_line = 0  # the first blank line since the last content line, 0 if none
        self.reuse: dict[str, Any] | None = None  # the dict the next list-item object must be
        self._scalar: tuple[str, int, int] = ("", 0, 0)
        self.ignore_rest = False

    # -- errors ------------------------------------------------------------------------------------

    def error(self, message: str, column: int = 1, line: int = 0) -> ToonDecodeError:
        return ToonDecodeError(message, line=line or self.line, column=column)

    # -- lines -------------------------------------------------------------------------------------

    def push(self, raw: str) -> None:
        """Read the next complete line."""
        self.line += 1
        if raw.endswith("\r"):
            raw = raw[:-1]
        if raw.endswith(" "):
            raw = raw.rstrip(" ")  # trailing spaces are not content (§12)
        if not raw:
            if not self.blank_line:
                self.blank_line = self.line
            return
        first = raw[0]
        if first == " " or first == "\t":
            content = raw.lstrip(" ")
            if content.startswith("#"):
                return  # a comment (§5.1); a tab before '#' makes it content
            content = raw.lstrip(" \t")
            if not content:
                if not self.blank_line:
                    self.blank_line = self.line
                return
            offset = len(raw) - len(content)
            depth = self._depth(raw, offset)
        elif first == "#":
            return
        else:
            content, offset, depth = raw, 0, 0
        if self.ignore_rest:
            return
        self.revision += 1
        if self.root_state == OBJECT_ROOT or self.root_state == ARRAY_ROOT:
            self._dispatch(content, depth, offset)
        else:
            self._root_line(content, depth, offset)

    def _depth(self, raw: str, offset: int) -> int:
        indentation = raw[:offset]
        tabs = indentation.count("\t")
        if self.strict:
            if tabs:
                raise self.error("a tab in the indentation (indent with spaces)", indentation.index("\t") + 1)
            if offset % self.indent:
                raise self.error(
                    f"indentation of {offset} spaces is not a multiple of {self.indent}", offset + 1
                )
        return (offset - tabs) // self.indent + tabs

    def depth_of(self, spaces: int) -> int | None:
        """The depth of a line indented by `spaces` spaces, or None when strict mode rejects it."""
        if self.strict and spaces % self.indent:
            return None
        return spaces // self.indent

    def _root_line(self, content: str, depth: int, column: int) -> None:
        if self.root_state == SCALAR_ROOT:
            text, line, at = self._scalar
            raise self.error(f"missing colon after {text!r}: a key needs ': value'", at + 1, line)
        header = None
        if depth == 0:
            header = self._header(content, column)
            if header is not None and header.key is None:
                self.root_state = ARRAY_ROOT
                self.root = self._open(header, 1, False, column)
                return
            if content == "[]":
                self.root_state = ARRAY_ROOT
                self.root = []
                return
        if header is None and find_unquoted(content, ":") < 0:
            # a root primitive, if no other line follows (§5); its indentation does not matter
            self.root_state = SCALAR_ROOT
            self._scalar = (content, self.line, column)
            return
        self.open_root_object()
        self._dispatch(content, depth, column)

    def open_root_object(self) -> None:
        """Make the root an object (a key-value line at depth 0 came first)."""
        if self.root_state == NO_ROOT:
            self.root_state = OBJECT_ROOT
            self.root = {}
            self.frames.append(Frame(OBJECT, self.root, 0, False, self.line, 1))

    def close_to(self, depth: int) -> None:
        """Close every scope whose content is deeper than `depth`: a line at `depth` proves it."""
        frames = self.frames
        while frames and frames[-1].depth > depth:
            self._close(frames.pop())

    def _close(self, frame: Frame) -> None:
        self.revision += 1
        if self.strict and frame.kind != OBJECT and frame.count != frame.length:
            raise self.error(
                f"the array declares {frame.length} {_KINDS[frame.kind]} but has {frame.count}",
                frame.column,
                frame.line,
            )

    def _dispatch(self, content: str, depth: int, column: int) -> None:
        frames = self.frames
        self.close_to(depth)
        while frames:
            frame = frames[-1]
            if frame.depth != depth:
                break
            if frame.kind == ROWS:
                # §9.3: at row depth, a colon before the first delimiter ends the rows
                colon = find_unquoted(content, ":")
                if colon >= 0:
                    delimiter = find_unquoted(content, frame.delimiter)
                    if delimiter < 0 or colon < delimiter:
                        self._close(frames.pop())
                        continue
            elif frame.kind == LIST and not (content == "-" or content.startswith("- ")):
                self._close(frames.pop())  # §9.4: a line at item depth that is no item ends the list
                continue
            break
        if not frames:
            if self.strict:
                raise self.error("content after the root array", column + 1)
            self.ignore_rest = True
            return
        frame = frames[-1]
        if self.blank_line:
            if frame.span and self.strict:
                raise self.error("a blank line inside an array (strict mode)", 1, self.blank_line)
            self.blank_line = 0
        if depth > frame.depth:
            if self.strict:
                raise self.error("unexpected indentation: this line belongs to no scope", column + 1)
            if find_unquoted(content, ":") < 0:
                raise self.error(f"missing colon after {content!r}: a key needs ': value'", column + 1)
            return
        kind = frame.kind
        if kind == OBJECT:
            self._field(frame.container, content, depth, frame.span, column)
        elif kind == ROWS:
            frame.span = True
            cells = self._cells(content, frame, column)
            frame.container.append(self._row(frame.fields, cells, column))
            frame.count += 1
        elif kind == LIST:
            frame.span = True
            frame.count += 1
            self._item(frame.container, content, depth, column)
        else:
            frame.span = True
            self._entry(frame, content, column)

    # -- line kinds --------------------------------------------------------------------------------

    def _header(self, content: str, column: int) -> Header | None:
        try:
            return try_header(content, strict=self.strict)
        except BadToken as error:
            if self.strict:
                raise self.error(error.message, column + error.offset + 1) from None
            return None  # non-strict: read it as a key-value line (§6)

    def _field(self, obj: dict[str, Any], content: str, depth: int, span: bool, column: int) -> None:
        """A key-value or header line whose field stands at `depth`, into `obj`."""
        if "[" in content:
            header = self._header(content, column)
            if header is not None:
                if header.key is not None:
                    self._check_duplicate(obj, header.key, column)
                    obj[header.key] = self._open(header, depth + 1, span, column)
                    return
                if self.strict:
                    raise self.error(
                        "a keyless array header stands only at the root or after '- '", column + 1
                    )
        colon = find_unquoted(content, ":")
        if colon < 0:
            raise self.error(f"missing colon after {content!r}: a key needs ': value'", column + 1)
        key = self._key(content[:colon], column)
        self._check_duplicate(obj, key, column)
        rest = content[colon + 1 :].strip(" ")
        if not rest:
            nested: dict[str, Any] = {}
            obj[key] = nested
            self.frames.append(Frame(OBJECT, nested, depth + 1, span, self.line, column + 1))
        elif rest == "[]":
            obj[key] = []
        else:
            obj[key] = self._primitive(rest, column + content.index(rest, colon + 1))

    def _item(self, items: list[Any], content: str, depth: int, column: int) -> None:
        """A list item (§9.4, §10): the text after '- ' at item depth `depth`."""
        rest = content[2:].lstrip(" ")
        at = column + len(content) - len(rest)
        if not rest:
            items.append({})
            return
        if rest == "[]":
            items.append([])
            return
        if "[" in rest:
            header = self._header(rest, at)
            if header is not None and header.key is None:
                if header.fields is None:
                    items.append(self._open(header, depth + 1, True, at))
                    return
                if self.strict:
                    raise self.error("a keyless header with fields stands only at the root", at + 1)
        if find_unquoted(rest, ":") >= 0:
            obj, self.reuse = (self.reuse if self.reuse is not None else {}), None
            items.append(obj)
            self.frames.append(Frame(OBJECT, obj, depth + 1, True, self.line, at + 1))
            self._field(obj, rest, depth + 1, True, at)
            return
        items.append(self._primitive(rest, at))

    def _entry(self, frame: Frame, content: str, column: int) -> None:
        """A keyed entry row (§9.5): ``key: cells``."""
        colon = find_unquoted(content, ":")
        if colon < 0:
            if self.strict:
                raise self.error("a keyed entry needs 'key: cells'", column + 1)
            return
        key = self._key(content[:colon], column)
        cells = self._cells(content[colon + 1 :], frame, column + colon + 1)
        entries: dict[str, Any] = frame.container
        self._check_duplicate(entries, key, column)
        entries[key] = self._row(frame.fields, cells, column + colon + 1)
        frame.count += 1

    def _open(self, header: Header, depth: int, span: bool, column: int) -> Any:
        """The container a header opens; its content lines stand at `depth`."""
        if header.fields is not None:
            container: Any = {} if header.keyed else []
            frame = Frame(ENTRIES if header.keyed else ROWS, container, depth, span, self.line, column + 1)
            frame.fields = header.fields
            frame.leaves = count_leaves(header.fields)
            frame.delimiter = header.delimiter
            frame.length = header.length
            self.frames.append(frame)
            return container
        if header.rest:
            values = [
                self._primitive(token, column) for token in split_delimited(header.rest, header.delimiter)
            ]
            if self.strict and len(values) != header.length:
                raise self.error(
                    f"the array declares {header.length} values but has {len(values)}", column + 1
                )
            return values
        items: list[Any] = []
        frame = Frame(LIST, items, depth, span, self.line, column + 1)
        frame.length = header.length
        self.frames.append(frame)
        return items

    # -- values ------------------------------------------------------------------------------------

    def _cells(self, text: str, frame: Frame, column: int) -> list[str]:
        cells = split_delimited(text, frame.delimiter)
        if self.strict and len(cells) != frame.leaves:
            raise self.error(
                f"a row of {len(cells)} cells where the header has {frame.leaves} fields", column + 1
            )
        return cells

    def _row(self, fields: list[Field], cells: list[str], column: int) -> dict[str, Any]:
        values = [self._primitive(cell, column) for cell in cells]
        if all(group is None for _, group in fields):
            return dict(zip([name for name, _ in fields], values, strict=False))
        position = 0

        def build(group: list[Field]) -> dict[str, Any]:
            nonlocal position
            obj: dict[str, Any] = {}
            for name, inner in group:
                if inner is not None:
                    obj[name] = build(inner)
                elif position < len(values):
                    obj[name] = values[position]
                    position += 1
            return obj

        return build(fields)

    def _primitive(self, token: str, column: int) -> Any:
        try:
            return parse_primitive(token)
        except BadToken as error:
            raise self.error(error.message, column + error.offset + 1) from None

    def _key(self, token: str, column: int) -> str:
        try:
            return parse_key(token)
        except BadToken as error:
            raise self.error(error.message, column + error.offset + 1) from None

    def _check_duplicate(self, obj: dict[str, Any], key: str, column: int) -> None:
        if self.strict and key in obj:
            raise self.error(f"duplicate key {key!r}", column + 1)

    # -- the end -----------------------------------------------------------------------------------

    def finish(self) -> Any:
        """Close every scope and return the value (an empty document is ``{}``)."""
        while self.frames:
            self._close(self.frames.pop())
        if self.root_state == NO_ROOT:
            self.root = {}
        elif self.root_state == SCALAR_ROOT:
            text, line, at = self._scalar
            self.line = line
            self.root = self._primitive(text, at)
        return self.root
