"""Regression tests from a hostile review of the typed streams: what a consumer would have noticed.

- an items iterator read on after it failed, or after its reader was closed, ended as if the stream
  were complete (a failed or closed generator just stops) instead of raising;
- two tasks sharing one items iterator got Python's bare RuntimeError, not `StreamProtocolError`;
- a reader (and `to_sse`) that had the end frame still waited for the byte stream to close before
  handing over the footer or ending the items: a transport left open hung a complete stream;
- text that is not UTF-8 (a str chunk with a lone surrogate, SSE bytes that do not decode) escaped as
  a raw Unicode error instead of a `StreamError`.
"""

from __future__ import annotations

import anyio
import pytest

from lionflow import StreamProtocolError, streams
from tests.streams._support import ITEM, ByteSource, Job, Segment, Summary, raw

pytestmark = pytest.mark.anyio

PLAIN = streams.stream_types(Segment)
FULL = streams.stream_types(Segment, header_type=Job, footer_type=Summary)
A, B = Segment(text="a", index=0), Segment(text="b", index=1)


def _plain(*items: Segment, end: bool = True) -> bytes:
    writer = streams.stream_writer(PLAIN)
    data = b"".join(writer.yield_item(item) for item in items)
    return data + (writer.yield_end() if end else b"")


# --- the end frame ends the stream: nothing waits for the transport to close ---


async def test_items_end_at_the_end_frame_while_the_byte_stream_stays_open() -> None:
    source = ByteSource([_plain(A, B)], hang=True)
    reader = streams.stream_reader(PLAIN, source, require_end=True)
    with anyio.fail_after(5):
        assert [item async for item in reader.read_items()] == [A, B]
    assert source.closed.is_set()


async def test_the_footer_is_handed_over_at_the_end_frame_while_the_byte_stream_stays_open() -> None:
    writer = streams.stream_writer(FULL)
    parts = [writer.yield_header(Job(name="j")), writer.yield_item(A), writer.yield_footer(Summary(count=1))]
    source = ByteSource([*parts, writer.yield_end()], hang=True)
    reader = streams.stream_reader(FULL, source, require_end=True)
    with anyio.fail_after(5):
        assert await reader.read_header() == Job(name="j")
        assert [item async for item in reader.read_items()] == [A]
        assert await reader.read_footer() == Summary(count=1)
    assert source.closed.is_set()


async def test_bytes_that_came_with_the_end_frame_are_still_refused() -> None:
    reader = streams.stream_reader(PLAIN, ByteSource([_plain(A) + raw(ITEM, "{}")], hang=True))
    with anyio.fail_after(5), pytest.raises(StreamProtocolError, match="after the end frame"):
        [item async for item in reader.read_items()]


async def test_to_sse_ends_at_the_end_frame_while_the_byte_stream_stays_open() -> None:
    source = ByteSource([_plain(A)], hang=True)
    with anyio.fail_after(5):
        events = [event async for event in streams.to_sse(source)]
    assert [event.split("\n")[1] for event in events] == ["event: item", "event: end"]
    assert source.closed.is_set()


# --- text that is not UTF-8 is a StreamError, not a raw UnicodeError ---


async def test_a_str_chunk_with_a_lone_surrogate_is_a_protocol_error() -> None:
    text = _plain(A).decode()
    source = ByteSource([text[:3], "\ud83d", text[3:]])
    reader = streams.stream_reader(PLAIN, source)
    with pytest.raises(StreamProtocolError, match="not text"):
        [item async for item in reader.read_items()]
    assert source.closed.is_set()


@pytest.mark.parametrize(
    "chunks",
    [
        [b'event: item\ndata: {"text":"\xff","index":0}\n\n'],
        ['event: item\ndata: {"text":"\ud83d","index":0}\n\n'],
    ],
    ids=["bytes-not-utf8", "str-lone-surrogate"],
)
async def test_sse_that_is_not_utf8_text_is_a_protocol_error(chunks: list[bytes | str]) -> None:
    reader = streams.stream_reader(PLAIN, streams.from_sse(ByteSource(chunks)))
    with pytest.raises(StreamProtocolError, match="UTF-8"):
        [item async for item in reader.read_items()]
