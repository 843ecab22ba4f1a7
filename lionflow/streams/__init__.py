"""Typed streams: an optional header, 0..N items and an optional footer, each a pydantic model,
carried as frames over any byte stream (or as SSE events) and read back typed::

    from lionflow import streams

    TYPES = streams.stream_types(Item, header_type=Header, footer_type=Footer)
    writer = streams.stream_writer(TYPES)
    data = writer.yield_header(h) + writer.yield_item(i) + writer.yield_footer(f) + writer.yield_end()
    reader = streams.stream_reader(TYPES, byte_stream, require_end=True)
    header = await reader.read_header()
    async for item in reader.read_items(): ...
    footer = await reader.read_footer()

See docs/streams.md for the wire format and what each error means.
"""

from lionflow.streams._reader import StreamItems, StreamReader, stream_reader
from lionflow.streams._sse import from_sse, to_sse
from lionflow.streams._types import DEFAULT_MAX_FRAME_BYTES, FrameKind, StreamTypes, stream_types
from lionflow.streams._writer import StreamWriter, stream_writer

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "FrameKind",
    "StreamItems",
    "StreamReader",
    "StreamTypes",
    "StreamWriter",
    "from_sse",
    "stream_reader",
    "stream_types",
    "stream_writer",
    "to_sse",
]
