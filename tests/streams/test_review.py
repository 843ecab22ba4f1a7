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

import contextlib
from collections.abc import AsyncIterator

import anyio
import pytest

from lionflow import StreamProtocolError, StreamTruncated, StreamValidationError, streams
from tests.streams._support import END, ITEM, ByteSource, Job, Segment, Summary, raw

pytestmark = pytest.mark.anyio

PLAIN = streams.stream_types(Segment)
FULL = streams.stream_types(Segment, header_type=Job, footer_type=Summary)
A, B = Segment(text="a", index=0), Segment(text="b", index=1)


def _plain(*items: Segment, end: bool = True) -> bytes:
    writer = streams.stream_writer(PLAIN)
    data = b"".join(writer.yield_item(item) for item in items)
    return data + (writer.yield_end() if end else b"")


# --- an items iterator never ends "cleanly" once its reader failed or was closed ---


async def test_reading_on_after_a_failed_item_raises_instead_of_ending_cleanly() -> None:
    # A consumer that skips a bad item and reads on must not mistake the closed reader for the end.
    reader = streams.stream_reader(PLAIN, ByteSource([raw(ITEM, "{}"), _plain(A, B)]))
    items = reader.read_items()
    with pytest.raises(StreamValidationError):
        await anext(items)
    with pytest.raises(StreamProtocolError, match="closed"):
        await anext(items)


async def test_reading_on_after_aclose_raises_instead_of_ending_cleanly() -> None:
    for started in (False, True):
        reader = streams.stream_reader(PLAIN, ByteSource([_plain(A, B)]))
        items = reader.read_items()
        if started:
            assert await anext(items) == A
        await reader.aclose()
        with pytest.raises(StreamProtocolError, match="closed"):
            await anext(items)


async def test_reading_on_after_closing_the_iterator_raises() -> None:
    reader = streams.stream_reader(PLAIN, ByteSource([_plain(A, B)]))
    async with contextlib.aclosing(reader.read_items()) as items:
        assert await anext(items) == A
    with pytest.raises(StreamProtocolError, match="closed"):
        await anext(items)


async def test_a_finished_iterator_keeps_ending() -> None:
    reader = streams.stream_reader(PLAIN, ByteSource([_plain(A)]), require_end=True)
    items = reader.read_items()
    assert [item async for item in items] == [A]
    with pytest.raises(StopAsyncIteration):
        await anext(items)


async def test_two_tasks_iterating_one_items_iterator_is_a_protocol_error() -> None:
    source = ByteSource([], hang=True)
    reader = streams.stream_reader(PLAIN, source)
    items = reader.read_items()
    async with anyio.create_task_group() as group:
        group.start_soon(anext, items)
        await source.waiting.wait()
        with pytest.raises(StreamProtocolError, match="another task"):
            await anext(items)
        group.cancel_scope.cancel()
    # The refused read changed nothing; the cancelled one closed the stream.
    assert source.closed.is_set()


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


# --- attacks that held: kept as guards ---


async def test_a_length_split_across_chunks_and_bytes_like_chunks_read_the_same() -> None:
    data = _plain(A, B)
    chunks: list[bytes] = [data[:2], b"", bytearray(data[2:4]), memoryview(data)[4:9], data[9:]]  # type: ignore[list-item]
    reader = streams.stream_reader(PLAIN, ByteSource(chunks), require_end=True)
    assert [item async for item in reader.read_items()] == [A, B]


async def test_a_frame_of_exactly_max_frame_bytes_is_read_and_one_more_is_refused_at_its_length() -> None:
    body = A.model_dump_json().encode()
    reader = streams.stream_reader(PLAIN, ByteSource([raw(ITEM, body)]), max_frame_bytes=len(body))
    assert [item async for item in reader.read_items()] == [A]
    # The body never comes: the length alone is refused, without waiting for it.
    source = ByteSource([raw(ITEM, body)[:5]], hang=True)
    reader = streams.stream_reader(PLAIN, source, max_frame_bytes=len(body) - 1)
    with anyio.fail_after(5), pytest.raises(StreamProtocolError, match="over max_frame_bytes"):
        [item async for item in reader.read_items()]


async def test_an_error_from_the_byte_stream_is_raised_as_is_not_as_truncation() -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield _plain(A, end=False)[:7]
        raise OSError("connection reset")

    reader = streams.stream_reader(PLAIN, failing())
    with pytest.raises(OSError, match="connection reset"):
        [item async for item in reader.read_items()]
    with pytest.raises(StreamProtocolError, match="closed"):
        reader.read_items()


async def test_an_end_frame_with_nothing_after_it_under_a_cut_is_not_truncation() -> None:
    # A stream ending exactly after its end frame, the end frame split in every way.
    data = _plain(A)
    for cut in range(len(data) - 5, len(data)):
        reader = streams.stream_reader(PLAIN, ByteSource([data[:cut], data[cut:]]), require_end=True)
        assert [item async for item in reader.read_items()] == [A]
    reader = streams.stream_reader(PLAIN, ByteSource([data[:-1]]), require_end=True)
    with pytest.raises(StreamTruncated, match="inside frame 1"):
        [item async for item in reader.read_items()]
    assert raw(END) == data[-5:]
