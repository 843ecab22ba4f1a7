"""The types a typed stream carries, and the frame format both ends share.

A frame is one kind byte, a big-endian uint32 length and that many bytes of body::

    +------+-----------------+----------------------+
    | kind | length (uint32, | body: `length` bytes |
    | 1 B  |  big-endian) 4 B| of pydantic JSON     |
    +------+-----------------+----------------------+

The end frame has kind END and length 0.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel

ItemT = TypeVar("ItemT", bound=BaseModel)
HeaderT = TypeVar("HeaderT", bound=BaseModel | None)
FooterT = TypeVar("FooterT", bound=BaseModel | None)

# The kind byte and the length before every body.
PREFIX = struct.Struct(">BI")
# A frame's length at most the reader trusts by default: far above any sane item, far below what
# buffering would hurt. A corrupt length is refused at once instead of awaited.
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
MAX_LENGTH = 0xFFFFFFFF


class FrameKind(enum.IntEnum):
    """The kind byte of a frame. The values are truss-chains' own, so that each reader reads the
    other's writer (truss-chains has no use for the end frame, and ends its items at it). A stream of
    text fed by mistake (``{`` is 0x7B) fails on its first byte."""

    HEADER = 2
    ITEM = 3
    FOOTER = 4
    END = 5

    @property
    def label(self) -> str:
        """The lower-case name: ``"header"``, ``"item"``, ``"footer"`` or ``"end"``; also the SSE event."""
        return self.name.lower()


KINDS_BY_LABEL = {kind.label: kind for kind in FrameKind}


def frame(kind: FrameKind, body: bytes) -> bytes:
    """One frame's bytes."""
    return PREFIX.pack(kind, len(body)) + body


@dataclass(frozen=True, slots=True)
class StreamTypes(Generic[ItemT, HeaderT, FooterT]):
    """The single source of truth for one typed stream: the item model, and the header and footer
    models if the stream has them (None when it has not). Build it with `stream_types()` and share it
    between the writer and the reader."""

    item_type: type[ItemT]
    header_type: type[HeaderT] | None = None
    footer_type: type[FooterT] | None = None


@overload
def stream_types(
    item_type: type[ItemT], *, header_type: None = None, footer_type: None = None
) -> StreamTypes[ItemT, None, None]: ...
@overload
def stream_types(
    item_type: type[ItemT], *, header_type: type[HeaderT], footer_type: None = None
) -> StreamTypes[ItemT, HeaderT, None]: ...
@overload
def stream_types(
    item_type: type[ItemT], *, header_type: None = None, footer_type: type[FooterT]
) -> StreamTypes[ItemT, None, FooterT]: ...
@overload
def stream_types(
    item_type: type[ItemT], *, header_type: type[HeaderT], footer_type: type[FooterT]
) -> StreamTypes[ItemT, HeaderT, FooterT]: ...
@overload
def stream_types(
    item_type: type[ItemT],
    *,
    header_type: type[HeaderT] | None = None,
    footer_type: type[FooterT] | None = None,
) -> StreamTypes[ItemT, HeaderT | None, FooterT | None]: ...
def stream_types(
    item_type: type[Any],
    *,
    header_type: type[Any] | None = None,
    footer_type: type[Any] | None = None,
) -> StreamTypes[Any, Any, Any]:
    """The types of a stream: an optional header, 0..N items and an optional footer, each a pydantic
    model. A declared header or footer is part of every stream of these types::

        TYPES = streams.stream_types(Segment, header_type=Job, footer_type=Summary)
    """
    for role, model in (("item_type", item_type), ("header_type", header_type), ("footer_type", footer_type)):
        if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{role} must be a pydantic model class, got {model!r}")
    return StreamTypes(item_type, header_type, footer_type)
