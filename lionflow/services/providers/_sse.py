"""Server-sent events, bytes in and events out: the native transport's decoder (WHATWG HTML,
"Server-sent events", the event stream interpretation).

`SseDecoder.feed()` takes whatever bytes the socket gave (an event may be split anywhere, even
inside a CRLF) and returns the events those bytes completed. Lines end in CR, LF or CRLF; a line
starting with ``:`` is a comment; ``data`` lines of one event are joined with LF; ``event``, ``id``
(without NUL) and ``retry`` (digits only) are kept; unknown fields are ignored; one space after the
colon is dropped; a byte order mark that begins the stream is dropped. An event is dispatched
at a blank line, and only when it has data; with ``sdk_dispatch=True``, as the official SDKs built
on Stainless's decoder (openai, anthropic, groq) dispatch: also when it has a name, or a retry, or
the stream ever set an id (which is never reset), with data that may be empty.

This runs once per delta of every native stream, so it works on whole byte strings
(`bytes.splitlines`) and touches each line once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SseEvent:
    """One dispatched event: its type (None when the stream named none, which the specification
    calls ``message``; some SDKs tell the two apart), its data (the data lines joined with LF, as
    bytes: the JSON decoder takes them as they are), and the stream's last event id and
    reconnection time as they stood when it was dispatched."""

    event: str | None
    data: bytes
    id: str | None = None
    retry: int | None = None


_LINE_ENDS = (b"\n", b"\r")
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, which a stream may begin with


class SseDecoder:
    """An incremental event-stream parser; see the module's docstring."""

    __slots__ = (
        "_data",
        "_event",
        "_id",
        "_names",
        "_partial",
        "_retry",
        "_retry_set",
        "_sdk",
        "_skip_lf",
        "_started",
    )

    def __init__(self, *, sdk_dispatch: bool = False) -> None:
        self._sdk = sdk_dispatch  # see the module's docstring
        self._retry_set = False  # a `retry` line since the last blank line (what the SDKs dispatch on)
        self._names: dict[bytes, str] = {}  # `event:` lines seen, and the names they give
        self._started = False  # whether the stream's first bytes (and a byte order mark) went by
        # An unterminated line from the previous feeds, in the pieces they brought: joined once its
        # end arrives (a line of megabytes over many reads is copied once, not once per read).
        self._partial: list[bytes] = []
        self._skip_lf = False  # the previous feed ended in CR: an LF that starts the next is its CRLF
        self._data: list[bytes] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str | None:
        """The last ``id`` the stream set (what a reconnecting client sends as ``Last-Event-ID``)."""
        return self._id

    @property
    def retry(self) -> int | None:
        """The reconnection time in milliseconds the stream last asked for, if any."""
        return self._retry

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events that `chunk`, appended to what came before, completes."""
        if not self._started:
            chunk = b"".join([*self._partial, chunk])
            self._partial = []
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._partial = [chunk]  # perhaps a byte order mark, split
                return []
            self._started = True
            chunk = chunk.removeprefix(_BOM)
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._partial:
            if b"\n" not in chunk and b"\r" not in chunk:  # the line goes on
                self._partial.append(chunk)
                return []
            self._partial.append(chunk)
            chunk = b"".join(self._partial)
            self._partial = []
        if not chunk:
            return []
        lines = chunk.splitlines()
        last = chunk[-1:]
        if last not in _LINE_ENDS:
            self._partial = [lines.pop()]
        elif last == b"\r":
            self._skip_lf = True
        events: list[SseEvent] = []
        data = self._data
        names = self._names
        for line in lines:
            if line.startswith(b"data:"):  # nearly every line
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif not line:
                if data or (self._sdk and (self._event or self._id or self._retry_set)):
                    events.append(
                        SseEvent(
                            self._event,
                            data[0] if len(data) == 1 else b"\n".join(data),
                            self._id,
                            self._retry,
                        )
                    )
                    data.clear()
                self._event = None
                self._retry_set = False
            elif line.startswith(b"event:"):  # named events (Anthropic, Responses): every other line
                name = names.get(line)
                if name is None:
                    value = line[7:] if line[6:7] == b" " else line[6:]
                    name = names[line] = value.decode("utf-8", "replace")
                    if len(names) > 64:  # a stream of ever new names: stop remembering them
                        names.clear()
                self._event = name
            elif line[0] != 58:  # b":" starts a comment
                self._field(line)
        return events

    def _field(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"data":  # "data" without a colon: an empty data line
            self._data.append(value)
        elif name == b"id":
            if b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry":
            if value.isdigit():
                self._retry = int(value)
                self._retry_set = True
            elif self._sdk:
                try:  # Stainless's decoder takes what int() takes: a sign, spaces, underscores
                    int(value)
                except ValueError:
                    pass
                else:
                    self._retry_set = True

    def end(self) -> list[SseEvent]:
        """At the end of the stream: the event its last bytes began, if they never ended it with a
        blank line. The specification drops such an event; the official SDKs (and so lionflow,
        which must read what they read) dispatch it."""
        if self._partial:
            partial, self._partial = self._partial, []
            self.feed(b"".join(partial) + b"\n")
        if not self._data:
            return []
        event = SseEvent(self._event, b"\n".join(self._data), self._id, self._retry)
        self._data.clear()
        self._event = None
        return [event]
