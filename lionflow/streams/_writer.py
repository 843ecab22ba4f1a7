"""The writer: pydantic models in, frames out, in the order the reader accepts."""

from __future__ import annotations

from typing import Generic, cast

from pydantic import BaseModel

from lionflow.errors import StreamProtocolError
from lionflow.streams._types import MAX_LENGTH, FooterT, FrameKind, HeaderT, ItemT, StreamTypes, frame

# Where the writer stands: what it has written last.
_START, _HEADER, _ITEMS, _FOOTER, _ENDED = range(5)


class StreamWriter(Generic[ItemT, HeaderT, FooterT]):
    """Turns each part of a typed stream into the bytes of its frame; yield them from your stream.

    The writer keeps the order the reader checks: the header first (and required when the types
    declare one), then items, then the footer (required when declared), then optionally the end
    frame, after which nothing. A call out of that order raises `StreamProtocolError`, so a writer
    never produces a stream its reader would refuse::

        writer = streams.stream_writer(TYPES)
        yield writer.yield_header(job)
        for segment in segments:
            yield writer.yield_item(segment)
        yield writer.yield_footer(summary)
        yield writer.yield_end()  # lets a reader with require_end=True tell the end from a cut
    """

    def __init__(self, types: StreamTypes[ItemT, HeaderT, FooterT]) -> None:
        self._types = types
        self._state = _START

    @property
    def types(self) -> StreamTypes[ItemT, HeaderT, FooterT]:
        """The stream types this writer writes."""
        return self._types

    def yield_header(self, header: HeaderT) -> bytes:
        """The header frame: first, and only when the types declare a header."""
        if self._types.header_type is None:
            raise StreamProtocolError(
                "yield_header(): these stream types declare no header; pass header_type= to stream_types()"
            )
        self._check("yield_header()", allowed=(_START,), rule="the header comes once, as the first frame")
        body = self._body(header, cast("type[BaseModel]", self._types.header_type), "yield_header()")
        self._state = _HEADER
        return frame(FrameKind.HEADER, body)

    def yield_item(self, item: ItemT) -> bytes:
        """One item frame: after the header (if declared), before the footer."""
        self._check_header_written("yield_item()")
        self._check("yield_item()", allowed=(_START, _HEADER, _ITEMS), rule="items come before the footer")
        body = self._body(item, self._types.item_type, "yield_item()")
        self._state = _ITEMS
        return frame(FrameKind.ITEM, body)

    def yield_footer(self, footer: FooterT) -> bytes:
        """The footer frame: after the items, and only when the types declare a footer."""
        if self._types.footer_type is None:
            raise StreamProtocolError(
                "yield_footer(): these stream types declare no footer; pass footer_type= to stream_types()"
            )
        self._check_header_written("yield_footer()")
        rule = "the footer comes once, after the items"
        self._check("yield_footer()", allowed=(_START, _HEADER, _ITEMS), rule=rule)
        body = self._body(footer, cast("type[BaseModel]", self._types.footer_type), "yield_footer()")
        self._state = _FOOTER
        return frame(FrameKind.FOOTER, body)

    def yield_end(self) -> bytes:
        """The end frame: last. A reader made with ``require_end=True`` needs it to tell a finished
        stream from one cut between two frames."""
        rule = "the end frame comes once, last"
        self._check("yield_end()", allowed=(_START, _HEADER, _ITEMS, _FOOTER), rule=rule)
        self._check_header_written("yield_end()")
        if self._types.footer_type is not None and self._state != _FOOTER:
            raise StreamProtocolError(
                "yield_end(): these stream types declare a footer; call yield_footer() first"
            )
        self._state = _ENDED
        return frame(FrameKind.END, b"")

    def _check(self, call: str, *, allowed: tuple[int, ...], rule: str) -> None:
        if self._state == _ENDED:
            raise StreamProtocolError(f"{call}: the stream was ended with yield_end(); nothing may follow")
        if self._state not in allowed:
            raise StreamProtocolError(f"{call} out of order: {rule}")

    def _check_header_written(self, call: str) -> None:
        if self._types.header_type is not None and self._state == _START:
            raise StreamProtocolError(
                f"{call}: these stream types declare a header; call yield_header() first"
            )

    @staticmethod
    def _body(value: object, model: type[BaseModel], call: str) -> bytes:
        if not isinstance(value, model):
            raise TypeError(f"{call} takes a {model.__name__}, got {type(value).__name__}")
        body = value.model_dump_json().encode()
        if len(body) > MAX_LENGTH:
            raise StreamProtocolError(f"{call}: the JSON body is {len(body)} bytes, over a frame's 4 GiB")
        return body


def stream_writer(types: StreamTypes[ItemT, HeaderT, FooterT]) -> StreamWriter[ItemT, HeaderT, FooterT]:
    """A writer for `types` (see `StreamWriter`)."""
    return StreamWriter(types)
