"""Corrupt, misordered or invalid streams raise at once, name the frame, and never over-read."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from lionflow import (
    ConfigurationError,
    StreamError,
    StreamProtocolError,
    StreamTruncated,
    StreamValidationError,
    streams,
)
from tests.streams._support import (
    END,
    FOOTER,
    HEADER,
    ITEM,
    PROPERTY,
    ByteSource,
    Job,
    Segment,
    Summary,
    raw,
    split,
)

pytestmark = pytest.mark.anyio

FULL = streams.stream_types(Segment, header_type=Job, footer_type=Summary)
PLAIN = streams.stream_types(Segment)


def _full_stream() -> list[bytes]:
    writer = streams.stream_writer(FULL)
    return [
        writer.yield_header(Job(name="j")),
        writer.yield_item(Segment(text="a", index=0)),
        writer.yield_item(Segment(text="b", index=1)),
        writer.yield_footer(Summary(count=2)),
        writer.yield_end(),
    ]


async def _read_full(reader: streams.StreamReader[Segment, Job, Summary]) -> None:
    await reader.read_header()
    async for _ in reader.read_items():
        pass
    await reader.read_footer()


@pytest.mark.parametrize("kind", [0, 1, 6, 0x7B, 0xFF])
async def test_an_unknown_kind_byte_fails_on_that_byte_without_waiting_or_reading_on(kind: int) -> None:
    frames = _full_stream()
    data = b"".join(frames)
    at = len(frames[0]) + len(frames[1])  # frame 2's kind byte
    corrupt = data[:at] + bytes([kind]) + data[at + 1 :]
    # One byte at a time from a source that never ends: waiting would hang, reading on would show.
    source = ByteSource(split(corrupt, [1]), hang=True)
    reader = streams.stream_reader(FULL, source)
    with (
        anyio.fail_after(5),
        pytest.raises(StreamProtocolError, match=f"unknown kind byte 0x{kind:02x}") as caught,
    ):
        await _read_full(reader)
    assert caught.value.frame_index == 2
    assert source.bytes_taken == at + 1
    assert source.closed.is_set()


@pytest.mark.parametrize(("length", "limit"), [(1001, 1000), (2**32 - 1, streams.DEFAULT_MAX_FRAME_BYTES)])
async def test_a_length_over_the_limit_fails_on_its_fourth_byte(length: int, limit: int) -> None:
    good = raw(ITEM, '{"text":"a","index":0}')
    corrupt = good + bytes([ITEM]) + length.to_bytes(4, "big") + b'{"text":'
    source = ByteSource(split(corrupt, [1]), hang=True)
    reader = streams.stream_reader(PLAIN, source, max_frame_bytes=limit)
    got = []
    with anyio.fail_after(5), pytest.raises(StreamProtocolError, match="over max_frame_bytes") as caught:
        async for item in reader.read_items():
            got.append(item)
    assert got == [Segment(text="a", index=0)]
    assert caught.value.frame_index == 1
    assert source.bytes_taken == len(good) + 5


async def test_an_end_frame_with_a_length_is_refused() -> None:
    source = ByteSource([bytes([END, 0, 0, 0, 3])], hang=True)
    with anyio.fail_after(5), pytest.raises(StreamProtocolError, match="end frame of length 3"):
        [item async for item in streams.stream_reader(PLAIN, source).read_items()]


def _prefix_positions() -> list[int]:
    """The offsets of every kind and length byte in `_full_stream()`."""
    frames = _full_stream()
    starts = [sum(len(frame) for frame in frames[:k]) for k in range(len(frames))]
    return [start + offset for start in starts for offset in range(5)]


# Everything is drawn up front: an async test must not draw from st.data() while it runs.
@PROPERTY
@given(
    which=st.integers(0, len(_prefix_positions()) - 1),
    delta=st.integers(1, 255),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=4),
)
async def test_any_corrupted_kind_or_length_byte_raises_and_never_hangs(
    which: int, delta: int, sizes: list[int]
) -> None:
    stream = b"".join(_full_stream())
    position = _prefix_positions()[which]
    corrupt = stream[:position] + bytes([(stream[position] + delta) % 256]) + stream[position + 1 :]
    reader = streams.stream_reader(FULL, ByteSource(split(corrupt, sizes)), require_end=True)
    with anyio.fail_after(5), pytest.raises(StreamError) as caught:
        await _read_full(reader)
    assert isinstance(caught.value, StreamProtocolError | StreamTruncated | StreamValidationError)


@pytest.mark.parametrize(
    ("frames", "kind", "index"),
    [
        ([raw(HEADER, '{"name":"j"}'), raw(ITEM, '{"text":"a"}')], "item", 1),
        ([raw(HEADER, '{"name":7}')], "header", 0),
        ([raw(HEADER, '{"name":"j"}'), raw(FOOTER, '{"count":"many"}')], "footer", 1),
        (
            [raw(HEADER, '{"name":"j"}'), raw(ITEM, '{"text":"a","index":0}'), raw(ITEM, "{not json")],
            "item",
            2,
        ),
        ([raw(HEADER, '{"name":"j"}'), raw(ITEM, b'{"text":"\xff","index":0}')], "item", 1),
    ],
)
async def test_a_body_that_does_not_validate_names_its_frame(
    frames: list[bytes], kind: str, index: int
) -> None:
    reader = streams.stream_reader(FULL, ByteSource(frames))
    with pytest.raises(StreamValidationError) as caught:
        await _read_full(reader)
    assert (caught.value.frame_index, caught.value.kind) == (index, kind)
    assert f"frame {index} (a{'n' if kind == 'item' else ''} {kind} frame)" in str(caught.value)
    assert isinstance(caught.value.__cause__, ValidationError)
    assert isinstance(caught.value, ValueError)


_HDR, _ITEM, _FTR, _END = (
    raw(HEADER, '{"name":"j"}'),
    raw(ITEM, '{"text":"a","index":0}'),
    raw(FOOTER, '{"count":1}'),
    raw(END),
)


@pytest.mark.parametrize(
    ("types", "frames", "index", "message"),
    [
        (FULL, [_HDR, _ITEM, _FTR, _ITEM], 3, "an item frame after the footer"),
        (FULL, [_HDR, _ITEM, _HDR, _FTR], 2, "a header frame, out of place: the header comes once"),
        (FULL, [_HDR, _FTR, _FTR], 2, "a footer frame after the footer"),
        (FULL, [_HDR, _ITEM, _END], 2, "end frame, but these stream types declare a footer"),
        (FULL, [_HDR, _FTR, _END + _ITEM], 3, "after the end frame"),
        (FULL, [_ITEM], 0, "frame 0 is an item frame; these stream types declare a header"),
        (PLAIN, [_HDR, _ITEM], 0, "a header frame, out of place: these stream types declare none"),
        (PLAIN, [_ITEM, _FTR], 1, "a footer frame, out of place: these stream types declare none"),
        (PLAIN, [_ITEM, _END + _ITEM], 2, "after the end frame"),
        (PLAIN, [_END + b"\x00"], 1, "after the end frame"),
    ],
)
async def test_a_frame_out_of_order_is_a_protocol_error_naming_it(
    types: streams.StreamTypes[Segment, Job | None, Summary | None],
    frames: list[bytes],
    index: int,
    message: str,
) -> None:
    # Each list item is one chunk: what follows an end frame is refused when it came with it (the
    # reader does not wait on past the end frame; see test_review.py).
    reader = streams.stream_reader(types, ByteSource(frames, hang=True))
    with anyio.fail_after(5), pytest.raises(StreamProtocolError, match=message) as caught:
        if types.header_type is not None:
            await reader.read_header()
        async for _ in reader.read_items():
            pass
        if types.footer_type is not None:
            await reader.read_footer()
    assert caught.value.frame_index == index


async def test_read_items_before_a_declared_header_says_to_read_the_header_first() -> None:
    reader = streams.stream_reader(FULL, ByteSource(_full_stream()))
    with pytest.raises(StreamProtocolError, match=r"call read_header\(\) before read_items\(\)"):
        reader.read_items()
    # Nothing was consumed: read in order, the stream is whole.
    assert await reader.read_header() == Job(name="j")
    assert [item.text async for item in reader.read_items()] == ["a", "b"]
    assert await reader.read_footer() == Summary(count=2)


async def test_each_part_is_read_once_and_only_if_declared() -> None:
    reader = streams.stream_reader(FULL, ByteSource(_full_stream()))
    with pytest.raises(StreamProtocolError, match=r"call read_header\(\) first"):
        await reader.read_footer()
    await reader.read_header()
    with pytest.raises(StreamProtocolError, match="already called"):
        await reader.read_header()
    items = reader.read_items()
    with pytest.raises(StreamProtocolError, match="already called"):
        reader.read_items()
    with pytest.raises(StreamProtocolError, match="has not finished"):
        await reader.read_footer()
    assert [item.index async for item in items] == [0, 1]
    await reader.read_footer()
    with pytest.raises(StreamProtocolError, match="already called"):
        await reader.read_footer()

    plain = streams.stream_reader(PLAIN, ByteSource([]))
    with pytest.raises(StreamProtocolError, match="declare no header"):
        await plain.read_header()
    with pytest.raises(StreamProtocolError, match="declare no footer"):
        await plain.read_footer()


async def test_the_footer_may_follow_the_header_directly_when_there_are_no_items() -> None:
    writer = streams.stream_writer(FULL)
    frames = [writer.yield_header(Job(name="j")), writer.yield_footer(Summary(count=0))]
    reader = streams.stream_reader(FULL, ByteSource(frames))
    await reader.read_header()
    assert await reader.read_footer() == Summary(count=0)

    skipped = streams.stream_reader(FULL, ByteSource(_full_stream()))
    await skipped.read_header()
    with pytest.raises(
        StreamProtocolError, match=r"read the items with read_items\(\) before read_footer\(\)"
    ):
        await skipped.read_footer()


async def test_a_reader_that_failed_refuses_further_reads() -> None:
    reader = streams.stream_reader(PLAIN, ByteSource([raw(ITEM, "{}")]))
    with pytest.raises(StreamValidationError):
        [item async for item in reader.read_items()]
    with pytest.raises(StreamProtocolError, match="the reader is closed"):
        reader.read_items()


async def test_two_tasks_reading_one_stream_is_refused() -> None:
    source = ByteSource([], hang=True)
    reader = streams.stream_reader(FULL, source)
    async with anyio.create_task_group() as group:
        group.start_soon(reader.read_header)
        await source.waiting.wait()
        with pytest.raises(StreamProtocolError, match="another task is reading"):
            await reader.read_header()
        group.cancel_scope.cancel()


def test_a_bad_frame_limit_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="max_frame_bytes"):
        streams.stream_reader(PLAIN, ByteSource([]), max_frame_bytes=-1)


def test_the_writer_keeps_the_order_the_reader_checks() -> None:
    job, item, summary = Job(name="j"), Segment(text="a", index=0), Summary(count=1)
    writer = streams.stream_writer(FULL)
    with pytest.raises(StreamProtocolError, match=r"declare a header; call yield_header\(\) first"):
        writer.yield_item(item)
    with pytest.raises(StreamProtocolError, match=r"declare a header; call yield_header\(\) first"):
        writer.yield_end()
    writer.yield_header(job)
    with pytest.raises(StreamProtocolError, match="the header comes once, as the first frame"):
        writer.yield_header(job)
    writer.yield_item(item)
    with pytest.raises(StreamProtocolError, match=r"declare a footer; call yield_footer\(\) first"):
        writer.yield_end()
    writer.yield_footer(summary)
    with pytest.raises(StreamProtocolError, match="items come before the footer"):
        writer.yield_item(item)
    with pytest.raises(StreamProtocolError, match="the footer comes once"):
        writer.yield_footer(summary)
    writer.yield_end()
    with pytest.raises(StreamProtocolError, match="nothing may follow"):
        writer.yield_item(item)
    with pytest.raises(StreamProtocolError, match="nothing may follow"):
        writer.yield_footer(summary)
    with pytest.raises(StreamProtocolError, match="nothing may follow"):
        writer.yield_end()

    plain = streams.stream_writer(PLAIN)
    with pytest.raises(StreamProtocolError, match="declare no header; pass header_type="):
        plain.yield_header(job)  # type: ignore[arg-type]
    with pytest.raises(StreamProtocolError, match="declare no footer; pass footer_type="):
        plain.yield_footer(summary)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="yield_item\\(\\) takes a Segment, got Job"):
        plain.yield_item(job)  # type: ignore[arg-type]
