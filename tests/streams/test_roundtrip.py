"""Whatever a writer writes, a reader reads back equal, however the bytes are split."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lionflow import streams
from tests.streams._support import END, ITEM, PROPERTY, ByteSource, Job, Segment, Summary, split

pytestmark = pytest.mark.anyio

_texts = st.text(max_size=40)  # any code point but surrogates: 1- to 4-byte UTF-8
_jobs = st.builds(Job, name=_texts, tags=st.lists(_texts, max_size=3))
_segments = st.builds(Segment, text=_texts, index=st.integers(-(2**53), 2**53))
_summaries = st.builds(Summary, count=st.integers(0, 10**6), note=_texts)
_sizes = st.one_of(st.just([1]), st.lists(st.integers(1, 40), min_size=1, max_size=8))


@PROPERTY
@given(
    header=st.none() | _jobs,
    items=st.lists(_segments, max_size=12),
    footer=st.none() | _summaries,
    end=st.booleans(),
    sizes=_sizes,
)
async def test_what_the_writer_wrote_reads_back_equal_under_any_split(
    header: Job | None, items: list[Segment], footer: Summary | None, end: bool, sizes: list[int]
) -> None:
    types = streams.stream_types(
        Segment,
        header_type=Job if header is not None else None,
        footer_type=Summary if footer is not None else None,
    )
    writer = streams.stream_writer(types)
    data = b""
    if header is not None:
        data += writer.yield_header(header)
    data += b"".join(writer.yield_item(item) for item in items)
    if footer is not None:
        data += writer.yield_footer(footer)
    if end:
        data += writer.yield_end()

    source = ByteSource(split(data, sizes))
    reader = streams.stream_reader(types, source, require_end=end)
    if header is not None:
        assert await reader.read_header() == header
    assert [item async for item in reader.read_items()] == items
    if footer is not None:
        assert await reader.read_footer() == footer
    assert source.closed.is_set()  # finished: the reader let go of the stream


async def test_a_split_inside_a_multibyte_character_is_read_whole() -> None:
    types = streams.stream_types(Segment)
    writer = streams.stream_writer(types)
    items = [Segment(text="é€😀 naïve", index=1), Segment(text="𝔘𝔫𝔦𝔠𝔬𝔡𝔢", index=2)]
    data = b"".join(writer.yield_item(item) for item in items)
    reader = streams.stream_reader(types, ByteSource(split(data, [1])))
    assert [item async for item in reader.read_items()] == items


async def test_str_chunks_are_read_as_their_utf8_bytes() -> None:
    # The seed's low-level streams may yield str. Frames under 128 bytes decode as UTF-8 whole.
    types = streams.stream_types(Segment)
    writer = streams.stream_writer(types)
    items = [Segment(text="héllo", index=i) for i in range(3)]
    text = b"".join(writer.yield_item(item) for item in items).decode()
    chunks = [text[i : i + 3] for i in range(0, len(text), 3)]
    reader = streams.stream_reader(types, ByteSource(chunks))
    assert [item async for item in reader.read_items()] == items


async def test_an_empty_stream_of_plain_items_is_zero_items() -> None:
    reader = streams.stream_reader(streams.stream_types(Segment), ByteSource([]))
    assert [item async for item in reader.read_items()] == []


def test_a_frame_is_kind_byte_length_and_json() -> None:
    types = streams.stream_types(Segment, header_type=Job, footer_type=Summary)
    writer = streams.stream_writer(types)
    header = writer.yield_header(Job(name="j"))
    item = writer.yield_item(Segment(text="é", index=7))
    body = json.dumps({"text": "é", "index": 7}, separators=(",", ":"), ensure_ascii=False).encode()
    assert header[0] == 2
    assert item == bytes([ITEM]) + len(body).to_bytes(4, "big") + body
    assert writer.yield_footer(Summary(count=1))[0] == 4
    assert writer.yield_end() == bytes([END, 0, 0, 0, 0])
    assert isinstance(item, bytes)


def test_stream_types_are_frozen_and_refuse_non_models() -> None:
    types = streams.stream_types(Segment, footer_type=Summary)
    assert (types.item_type, types.header_type, types.footer_type) == (Segment, None, Summary)
    with pytest.raises(AttributeError):
        types.item_type = Job  # type: ignore[misc, assignment]
    with pytest.raises(TypeError, match="pydantic model"):
        streams.stream_types(dict)  # type: ignore[type-var]
