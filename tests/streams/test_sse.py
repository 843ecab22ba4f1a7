"""The same frames as SSE events: to_sse() then from_sse() reads back equal, however split."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lionflow import StreamProtocolError, StreamTruncated, streams
from tests.streams._support import ITEM, PROPERTY, ByteSource, Job, Segment, Summary, raw, split

pytestmark = pytest.mark.anyio

TYPES = streams.stream_types(Segment, header_type=Job, footer_type=Summary)
ITEMS = [Segment(text="línea\nwith a newline", index=0), Segment(text="😀", index=1)]


def _frames(*, end: bool = True) -> list[bytes]:
    writer = streams.stream_writer(TYPES)
    frames = [writer.yield_header(Job(name="j"))]
    frames += [writer.yield_item(item) for item in ITEMS]
    frames.append(writer.yield_footer(Summary(count=2, note="ünïcode")))
    if end:
        frames.append(writer.yield_end())
    return frames


async def _sse_text(frames: list[bytes]) -> str:
    return "".join([event async for event in streams.to_sse(ByteSource(frames))])


async def _read_back(
    chunks: list[str] | list[bytes], *, require_end: bool = True
) -> tuple[Job, list[Segment], Summary]:
    reader = streams.stream_reader(TYPES, streams.from_sse(ByteSource(chunks)), require_end=require_end)
    with anyio.fail_after(5):
        header = await reader.read_header()
        items = [item async for item in reader.read_items()]
        footer = await reader.read_footer()
    return header, items, footer


EXPECTED = (Job(name="j"), ITEMS, Summary(count=2, note="ünïcode"))


async def test_one_frame_is_one_event_with_its_index_kind_and_json() -> None:
    text = await _sse_text(_frames())
    events = text.split("\n\n")
    assert events[1] == 'id: 1\nevent: item\ndata: {"text":"línea\\nwith a newline","index":0}'
    assert events[4] == "id: 4\nevent: end\ndata:"
    assert text.endswith("\n\n")


@PROPERTY
@given(
    sizes=st.one_of(st.just([1]), st.lists(st.integers(1, 30), min_size=1, max_size=6)),
    line_end=st.sampled_from(["\n", "\r\n", "\r"]),
    as_bytes=st.booleans(),
)
async def test_sse_text_split_anywhere_reads_back_equal(
    sizes: list[int], line_end: str, as_bytes: bool
) -> None:
    text = (await _sse_text(_frames())).replace("\n", line_end)
    data = text.encode()
    pieces: list[str] = []
    position = 0
    for size in sizes * len(text):  # or cut the str itself, between characters
        if position >= len(text):
            break
        pieces.append(text[position : position + size])
        position += size
    chunks = split(data, sizes) if as_bytes else pieces  # bytes: inside characters, between CR and LF
    assert await _read_back(chunks) == EXPECTED


async def test_what_the_standard_allows_is_read() -> None:
    # A BOM, comments, no space after the colon, fields it ignores, data spread over lines (joined
    # with LF: JSON whitespace), and an event without data, which dispatches nothing.
    text = (
        "\ufeff: a comment\n"
        "retry: 1000\n\n"
        'event:header\ndata:{"name":\ndata: "j"}\n\n'
        "event: item\nid: 7\nfoo: bar\n"
        'data: {"text": "línea\\nwith a newline",\ndata:  "index": 0}\n\n'
        ": ping\n\n"
        "event: item\n\n"
        'event: item\ndata: {"text":"😀","index":1}\n\n'
        'event: footer\ndata: {"count": 2, "note": "ünïcode"}\n\n'
        "event: end\ndata\n\n"
    )
    assert await _read_back(split(text.encode(), [1])) == EXPECTED


async def test_an_event_that_is_not_a_frame_is_a_protocol_error_showing_its_data() -> None:
    text = await _sse_text(_frames()[:2])
    text += 'event: error\ndata: {"message": "upstream failed"}\n\n'
    with pytest.raises(StreamProtocolError, match=r"'error'.*upstream failed") as caught:
        await _read_back([text])
    assert caught.value.frame_index == 2


async def test_sse_cut_inside_an_event_is_truncated_and_between_events_needs_require_end() -> None:
    text = await _sse_text(_frames())
    cut_inside = text[: text.index("event: footer") + len("event: footer\ndata: {")]
    with pytest.raises(StreamTruncated, match="ended inside event 3"):
        await _read_back([cut_inside])
    between = text[: text.index("id: 4")]  # everything but the end event
    assert await _read_back([between], require_end=False) == EXPECTED
    with pytest.raises(StreamTruncated, match="without its end frame"):
        await _read_back([between], require_end=True)
    with pytest.raises(StreamTruncated, match="inside a UTF-8 character"):
        await _read_back([text.encode()[:-3] + "é".encode()[:1]])


async def test_to_sse_carries_a_missing_end_and_refuses_a_cut_frame() -> None:
    text = await _sse_text(_frames(end=False))
    assert "event: end" not in text
    with pytest.raises(StreamTruncated, match="inside frame 1"):
        await _sse_text([b"".join(_frames())[:30]])
    with pytest.raises(StreamProtocolError, match="not UTF-8"):
        await _sse_text([raw(ITEM, b"\xff")])


async def test_to_sse_and_from_sse_close_their_source_when_stopped_early() -> None:
    source = ByteSource(_frames())
    events = streams.to_sse(source)
    async for _ in events:
        break
    await events.aclose()
    assert source.closed.is_set()

    sse = ByteSource([await _sse_text(_frames())])
    frames = streams.from_sse(sse)
    async for _ in frames:
        break
    await frames.aclose()
    assert sse.closed.is_set()


async def test_an_sse_event_growing_past_its_limit_fails_before_it_ends() -> None:
    received = 0

    async def endless() -> AsyncIterator[str]:
        nonlocal received
        yield "event: item\n"
        while True:  # a data line that never ends, or data lines that never dispatch
            received += 1
            yield "data: " + "x" * 100 + ("\n" if received % 2 else "")

    with anyio.fail_after(5), pytest.raises(StreamProtocolError, match="over 1000 characters"):
        async for _ in streams.from_sse(endless(), max_event_chars=1000):
            pass
    assert received < 20  # refused once past the limit, not after reading on


async def test_events_under_the_limit_pass_however_many_there_are() -> None:
    many = _frames(end=False) * 50
    text = await _sse_text(many)
    frames = [frame async for frame in streams.from_sse(split_text(text, 7), max_event_chars=200)]
    assert frames == many


async def split_text(text: str, size: int) -> AsyncIterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]
