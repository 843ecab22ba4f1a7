"""The same frames as server-sent events, for HTTP clients that speak SSE rather than bytes.

One frame is one event: the frame's index as ``id``, its kind as ``event`` and its JSON body as
``data`` (the end frame's data is empty)::

    id: 3
    event: item
    data: {"words":["a","b"]}

The parser follows the HTML standard's event-stream rules (lines end in CRLF, LF or CR; one space
after the colon is dropped; several ``data`` lines join with LF; lines starting with a colon are
comments; a leading BOM is skipped) with one deliberate difference: where a browser silently drops
an event the stream ended inside, `from_sse` raises `StreamTruncated`, since losing an item
unnoticed is what typed streams exist to prevent.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncGenerator, AsyncIterable

import anyio

from lionflow.errors import StreamProtocolError, StreamTruncated
from lionflow.streams._frames import Chunk, FrameSource, describe
from lionflow.streams._types import DEFAULT_MAX_FRAME_BYTES, KINDS_BY_LABEL, FrameKind, frame

_LINE_END = re.compile(r"\r\n|\r|\n")


async def to_sse(
    byte_stream: AsyncIterable[Chunk], *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> AsyncGenerator[str, None]:
    """The frames of a typed byte stream (what a `StreamWriter` wrote, split anywhere) as SSE
    events, one string per event, ready to send as ``text/event-stream`` (UTF-8).

    Frames are carried as they are, not checked against any types: the reader at the far end does
    that. A stream that stops without an end frame gives an SSE stream without an ``end`` event, so a
    reader with ``require_end=True`` still sees the cut. The events end at the end frame (bytes that
    came with it raise `StreamProtocolError`; the byte stream is not awaited further). A cut inside a
    frame raises `StreamTruncated`; a body that is not UTF-8 raises `StreamProtocolError`. The byte
    stream is closed when the events end or the consumer stops."""
    frames = FrameSource(byte_stream, max_frame_bytes=max_frame_bytes)
    try:
        while (got := await frames.next()) is not None:
            kind, body = got
            index = frames.index - 1
            try:
                text = body.decode()
            except UnicodeDecodeError as error:
                raise StreamProtocolError(
                    f"frame {index} ({describe(kind)}) is not UTF-8 text, which SSE needs", frame_index=index
                ) from error
            # JSON holds line breaks only as whitespace between tokens: one data line per line.
            data = "".join(f"data: {line}\n" if line else "data:\n" for line in _LINE_END.split(text))
            if kind is FrameKind.END:
                # The end frame is the end, as for the reader: bytes that came with it are refused,
                # and a byte stream left open is not waited on (the response can finish).
                if frames.pending():
                    raise StreamProtocolError(
                        f"frame {frames.index} comes after the end frame; nothing may",
                        frame_index=frames.index,
                    )
                yield f"id: {index}\nevent: {kind.label}\n{data}\n"
                return
            yield f"id: {index}\nevent: {kind.label}\n{data}\n"
    finally:
        await frames.aclose()


async def from_sse(
    sse_stream: AsyncIterable[str | bytes], *, max_event_chars: int = DEFAULT_MAX_FRAME_BYTES
) -> AsyncGenerator[bytes, None]:
    """The typed byte stream carried by SSE events (from `to_sse`), one frame's bytes per event,
    ready for `stream_reader`::

        reader = streams.stream_reader(TYPES, streams.from_sse(response.aiter_bytes()))

    The SSE text (str or UTF-8 bytes) may be split anywhere, inside a character too; text that is
    not UTF-8 raises `StreamProtocolError`. An event that is not ``header``, ``item``, ``footer`` or
    ``end`` raises `StreamProtocolError` (with its data, which is where a server's error event says
    what went wrong); a stream that ends inside an event raises `StreamTruncated`. The SSE stream is
    closed when this ends or its consumer stops. An event whose text grows past `max_event_chars`
    characters raises `StreamProtocolError` as soon as it does, so an endless line cannot grow
    memory without bound (the reader's `max_frame_bytes` applies only once the event is whole)."""
    parser = _EventParser(max_event_chars)
    chunks = aiter(sse_stream)
    try:
        async for chunk in chunks:
            for index, event, data in parser.feed(chunk):
                yield _to_frame(index, event, data)
        parser.finish()
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()


class _EventParser:
    """SSE text in, (event type, data) out, for text split anywhere, in linear time."""

    def __init__(self, max_event_chars: int) -> None:
        self._max_event_chars = max_event_chars
        self._data_size = 0  # characters of the data lines of the event not yet dispatched
        self._line_size = 0  # characters of the line not yet ended
        # utf-8-sig drops a BOM at the very start, as the standard asks, and nowhere else.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._seen_text = False
        self._line: list[str] = []  # the pieces of the line not yet ended
        self._after_cr = False  # the last piece ended in CR: a LF first thing next belongs to it
        self._event = ""
        self._data: list[str] = []
        self._in_event = False  # a field of an event not yet dispatched was read
        self._count = 0

    def feed(self, chunk: str | bytes) -> list[tuple[int, str, str]]:
        if isinstance(chunk, str):
            text = chunk
            if not self._seen_text and text.startswith("\ufeff"):
                text = text[1:]
        else:
            try:
                text = self._decoder.decode(chunk)
            except UnicodeDecodeError as error:
                raise StreamProtocolError(
                    f"the SSE stream is not UTF-8 text (in event {self._count}: {error.reason})",
                    frame_index=self._count,
                ) from error
        if not text:
            return []
        self._seen_text = True
        if self._after_cr and text[0] == "\n":
            text = text[1:]
        self._after_cr = text.endswith("\r")
        events: list[tuple[int, str, str]] = []
        start = 0
        for match in _LINE_END.finditer(text):
            self._line.append(text[start : match.start()])
            line = "".join(self._line)
            self._line.clear()
            self._line_size = 0
            self._field(line, events)
            start = match.end()
        if start < len(text):
            self._line.append(text[start:])
            self._line_size += len(text) - start
        if self._data_size + self._line_size > self._max_event_chars:
            raise StreamProtocolError(
                f"SSE event {self._count} is over {self._max_event_chars} characters and not done yet",
                frame_index=self._count,
            )
        return events

    def finish(self) -> None:
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as error:
            raise StreamTruncated("the SSE stream ended inside a UTF-8 character") from error
        rest = "".join(self._line)
        if self._in_event or (rest and not rest.startswith(":")):
            raise StreamTruncated(
                f"the SSE stream ended inside event {self._count}, before the blank line that ends it",
                frame_index=self._count,
            )

    def _field(self, line: str, events: list[tuple[int, str, str]]) -> None:
        if not line:  # a blank line dispatches the event, if it has data
            if self._data:
                events.append((self._count, self._event or "message", "\n".join(self._data)))
                self._count += 1
            self._event = ""
            self._data = []
            self._data_size = 0
            self._in_event = False
            return
        if line.startswith(":"):  # a comment (a keep-alive ping, say)
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
            self._data_size += len(value) + 1
        # id, retry and fields the standard does not know carry nothing a frame needs
        self._in_event = True


def _to_frame(index: int, event: str, data: str) -> bytes:
    kind = KINDS_BY_LABEL.get(event)
    if kind is None:
        shown = data if len(data) <= 300 else data[:300] + "..."
        raise StreamProtocolError(
            f"SSE event {index} is {event!r}, not a typed stream's header, item, footer or end: {shown}",
            frame_index=index,
        )
    try:
        body = data.encode()
    except UnicodeEncodeError as error:  # a str with a lone surrogate
        raise StreamProtocolError(
            f"SSE event {index} ({event}) is not UTF-8 text: {error.reason}", frame_index=index
        ) from error
    return frame(kind, body)
