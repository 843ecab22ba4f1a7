"""A type checker knows what each part of a typed stream is: `read_items()` yields the item model.

`typing.assert_type` does nothing when the test runs but is checked by mypy (``make lint`` covers the
tests), so each line below is both a runtime assertion and a type-checker one.
"""

from __future__ import annotations

from typing import assert_type

import pytest

from lionflow import streams
from tests.streams._support import ByteSource, Job, Segment, Summary

pytestmark = pytest.mark.anyio


async def test_reader_and_writer_are_typed_by_the_stream_types() -> None:
    types = streams.stream_types(Segment, header_type=Job, footer_type=Summary)
    assert_type(types, streams.StreamTypes[Segment, Job, Summary])
    writer = streams.stream_writer(types)
    assert_type(writer, streams.StreamWriter[Segment, Job, Summary])
    data = writer.yield_header(Job(name="j")) + writer.yield_item(Segment(text="a", index=0))
    data += writer.yield_footer(Summary(count=1)) + writer.yield_end()
    assert_type(data, bytes)

    reader = streams.stream_reader(types, ByteSource([data]))
    assert_type(reader, streams.StreamReader[Segment, Job, Summary])
    header = await reader.read_header()
    assert_type(header, Job)
    items = reader.read_items()
    assert_type(items, streams.StreamItems[Segment])
    async for item in items:
        assert_type(item, Segment)
        assert item.text == "a"
    footer = await reader.read_footer()
    assert_type(footer, Summary)
    assert (header.name, footer.count) == ("j", 1)


async def test_read_items_is_typed_without_a_header_or_footer_too() -> None:
    writer = streams.stream_writer(streams.stream_types(Segment))
    data = writer.yield_item(Segment(text="a", index=0)) + writer.yield_end()
    reader = streams.stream_reader(streams.stream_types(Segment), ByteSource([data]))
    assert_type(reader, streams.StreamReader[Segment, None, None])
    async for item in reader.read_items():
        assert_type(item, Segment)
        assert item.index == 0
    footed = streams.stream_reader(streams.stream_types(Segment, footer_type=Summary), ByteSource([]))
    assert_type(footed.read_items(), streams.StreamItems[Segment])
    await footed.aclose()


def test_undeclared_parts_are_typed_none() -> None:
    assert_type(streams.stream_types(Segment), streams.StreamTypes[Segment, None, None])
    assert_type(streams.stream_types(Segment, header_type=Job), streams.StreamTypes[Segment, Job, None])
    assert_type(
        streams.stream_types(Segment, footer_type=Summary), streams.StreamTypes[Segment, None, Summary]
    )
