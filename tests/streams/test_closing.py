"""The reader lets go of its byte stream: when it is finished, when a read fails or is cancelled,
and when the consumer stops early."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import aclosing

import anyio
import pytest

from lionflow import StreamProtocolError, streams
from tests.streams._support import ByteSource, Job, Segment, raw

pytestmark = pytest.mark.anyio

TYPES = streams.stream_types(Segment)


def _items(count: int) -> list[bytes]:
    writer = streams.stream_writer(TYPES)
    return [writer.yield_item(Segment(text=str(i), index=i)) for i in range(count)]


async def test_leaving_async_with_after_an_early_break_closes_the_stream() -> None:
    source = ByteSource(_items(5), hang=True)
    async with streams.stream_reader(TYPES, source) as reader:
        async for item in reader.read_items():
            if item.index == 1:
                break
        assert not source.closed.is_set()
    assert source.closed.is_set()
    assert source.taken == 2  # nothing read past what was consumed
    with pytest.raises(StreamProtocolError, match="the reader is closed"):
        reader.read_items()


async def test_closing_the_items_iterator_closes_the_stream() -> None:
    source = ByteSource(_items(5), hang=True)
    reader = streams.stream_reader(TYPES, source)
    async with aclosing(reader.read_items()) as items:
        async for _ in items:
            break
    assert source.closed.is_set()


async def test_aclose_closes_the_stream_once() -> None:
    source = ByteSource(_items(1))
    reader = streams.stream_reader(TYPES, source)
    await reader.aclose()
    await reader.aclose()
    assert source.closed.is_set()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_bare_break_closes_the_stream_when_the_iterator_is_dropped(anyio_backend: str) -> None:
    # The seed's own shape: no `async with`. asyncio finalizes the abandoned generator at once and
    # quietly; trio finalizes it too but warns that `aclosing` should have been used, which the
    # docs say (and this suite's warnings-are-errors setting would turn into a failure).
    source = ByteSource(_items(5), hang=True)
    reader = streams.stream_reader(TYPES, source)
    async for item in reader.read_items():
        if item.index == 0:
            break
    gc.collect()
    with anyio.fail_after(5):
        await source.closed.wait()


async def test_a_failed_read_closes_the_stream() -> None:
    source = ByteSource([*_items(1), raw(3, "{}"), *_items(2)])
    reader = streams.stream_reader(TYPES, source)
    with pytest.raises(ValueError, match="frame 1"):
        [item async for item in reader.read_items()]
    assert source.closed.is_set()


async def test_a_cancelled_read_closes_the_stream() -> None:
    source = ByteSource(_items(1), hang=True)
    reader = streams.stream_reader(TYPES, source)
    got = []
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:

            async def cancel_when_waiting() -> None:
                await source.waiting.wait()
                scope.cancel()

            group.start_soon(cancel_when_waiting)
            async for item in reader.read_items():
                got.append(item)
    assert scope.cancelled_caught
    assert len(got) == 1
    assert source.closed.is_set()


async def test_an_async_generator_source_is_closed_on_an_early_stop() -> None:
    finished = anyio.Event()

    async def produce() -> object:
        try:
            for frame in _items(10):
                yield frame
        finally:
            finished.set()

    async with streams.stream_reader(TYPES, produce()) as reader:  # type: ignore[arg-type]
        async for _ in reader.read_items():
            break
    assert finished.is_set()


async def test_aclose_from_another_task_while_a_read_waits_says_to_cancel_that_task() -> None:
    types = streams.stream_types(Job)
    writer = streams.stream_writer(types)
    gate = anyio.Event()
    closed = False

    async def stalled() -> AsyncIterator[bytes]:
        nonlocal closed
        try:
            yield writer.yield_item(Job(name="first"))
            await gate.wait()  # a peer that sends nothing more for now
            yield writer.yield_end()
        finally:
            closed = True

    reader = streams.stream_reader(types, stalled())
    seen: list[str] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            first = anyio.Event()

            async def read() -> None:
                async for job in reader.read_items():
                    seen.append(job.name)
                    first.set()

            group.start_soon(read)
            await first.wait()
            await anyio.sleep(0.01)  # (the read is now waiting in the byte stream for more)
            with pytest.raises(StreamProtocolError, match="cancel that task"):
                await reader.aclose()  # Python's bare RuntimeError before
            group.cancel_scope.cancel()  # what the error says works: the read ends, the stream closes
    assert seen == ["first"]
    assert closed
