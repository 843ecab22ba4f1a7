"""Every cut of a valid stream is either a clean end or `StreamTruncated`, exactly as documented:

- a cut inside a frame is always `StreamTruncated`;
- a cut between frames is `StreamTruncated` when a declared header or footer is missing, or (with
  ``require_end=True``) the end frame; otherwise it is a clean finish with the items before it.
"""

from __future__ import annotations

import anyio
import pytest

from lionflow import StreamTruncated, streams
from lionflow.streams import StreamReader
from tests.streams._support import ByteSource, Job, Segment, Summary, split

pytestmark = pytest.mark.anyio

ITEMS = [Segment(text="first ✓", index=0), Segment(text="second", index=1)]

_cases = [
    pytest.param(
        header, footer, end, require_end, id=f"h{header:d}-f{footer:d}-end{end:d}-req{require_end:d}"
    )
    for header in (False, True)
    for footer in (False, True)
    for end in (False, True)
    for require_end in (False, True)
]


async def _read_all(reader: StreamReader[Segment, Job | None, Summary | None], got: list[Segment]) -> None:
    if reader.types.header_type is not None:
        await reader.read_header()
    async for item in reader.read_items():
        got.append(item)
    if reader.types.footer_type is not None:
        await reader.read_footer()


@pytest.mark.parametrize(("header", "footer", "end", "require_end"), _cases)
async def test_every_cut_is_truncation_or_a_clean_end_as_documented(
    header: bool, footer: bool, end: bool, require_end: bool
) -> None:
    types = streams.stream_types(
        Segment, header_type=Job if header else None, footer_type=Summary if footer else None
    )
    writer = streams.stream_writer(types)
    frames: list[tuple[str, bytes]] = []
    if header:
        frames.append(("header", writer.yield_header(Job(name="héader"))))
    frames += [("item", writer.yield_item(item)) for item in ITEMS]
    if footer:
        frames.append(("footer", writer.yield_footer(Summary(count=2))))
    if end:
        frames.append(("end", writer.yield_end()))
    data = b"".join(frame for _, frame in frames)
    boundaries = {
        sum(len(frame) for _, frame in frames[:k]): [kind for kind, _ in frames[:k]]
        for k in range(len(frames) + 1)
    }

    for cut in range(len(data) + 1):
        source = ByteSource(split(data[:cut], [1]))
        reader = streams.stream_reader(types, source, require_end=require_end)
        got: list[Segment] = []
        complete = boundaries.get(cut)
        clean = (
            complete is not None
            and (not header or "header" in complete)
            and (not footer or "footer" in complete)
            and (not require_end or "end" in complete)
        )
        with anyio.fail_after(5):
            if clean:
                await _read_all(reader, got)
            else:
                with pytest.raises(StreamTruncated) as caught:
                    await _read_all(reader, got)
                assert caught.value.frame_index is not None
                if complete is None:  # inside a frame: it names that frame
                    whole = max(k for k in boundaries if k < cut)
                    assert caught.value.frame_index == len(boundaries[whole]), cut
                    assert "inside frame" in str(caught.value)
        # Items that arrived whole were handed over before the error, and no others.
        whole_items = sum(
            1 for kind, frame in frames if kind == "item" and data.index(frame) + len(frame) <= cut
        )
        assert got == ITEMS[:whole_items], cut
        assert source.closed.is_set(), cut


async def test_a_cut_between_items_ends_cleanly_without_require_end_and_is_caught_with_it() -> None:
    types = streams.stream_types(Segment)
    writer = streams.stream_writer(types)
    first, second = (writer.yield_item(item) for item in ITEMS)
    cut = first  # the second item and the end frame never came

    relaxed = streams.stream_reader(types, ByteSource([cut]))
    assert [item async for item in relaxed.read_items()] == ITEMS[:1]

    strict = streams.stream_reader(types, ByteSource([cut]), require_end=True)
    got = []
    with pytest.raises(StreamTruncated, match="without its end frame"):
        async for item in strict.read_items():
            got.append(item)
    assert got == ITEMS[:1]
    complete = streams.stream_reader(types, ByteSource([first, second, writer.yield_end()]), require_end=True)
    assert [item async for item in complete.read_items()] == ITEMS


async def test_zero_frames_with_a_declared_header_is_truncated() -> None:
    reader = streams.stream_reader(streams.stream_types(Segment, header_type=Job), ByteSource([]))
    with pytest.raises(StreamTruncated, match="before its header") as caught:
        await reader.read_header()
    assert caught.value.frame_index == 0


async def test_zero_items_and_a_missing_footer_is_truncated_not_a_validation_error() -> None:
    # truss-chains gives a raw pydantic error here; the stream was cut, and the error says so.
    types = streams.stream_types(Segment, footer_type=Summary)
    reader = streams.stream_reader(types, ByteSource([]))
    with pytest.raises(StreamTruncated, match="before its footer"):
        [item async for item in reader.read_items()]

    reader = streams.stream_reader(types, ByteSource([]))
    with pytest.raises(StreamTruncated, match="before its footer"):
        await reader.read_footer()
