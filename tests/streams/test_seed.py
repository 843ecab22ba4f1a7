"""The seed's writer and reader examples (Baseten Chains streaming), run as written.

Imports aside, two truss-chains names are stood in for below (`chains.ChainletBase`, a base
class, and `chains.depends`, which hands a chainlet its dependency), and `make_pydantic_items` is
the seed's own placeholder, defined here. Every streaming call is the seed's, character for
character; the consumer's last line, ``return chunks``, is added so that the test can see them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pydantic
import pytest

from lionflow import streams as streaming

pytestmark = pytest.mark.anyio


class chains:
    class ChainletBase:
        pass

    @staticmethod
    def depends(chainlet: type[Any]) -> Any:
        return chainlet()


async def make_pydantic_items(inputs: Any) -> AsyncIterator[MyDataChunk]:
    for words in inputs:
        yield MyDataChunk(words=words)


# --- the seed, from here ---


class MyDataChunk(pydantic.BaseModel):
    words: list[str]


STREAM_TYPES = streaming.stream_types(MyDataChunk)


class Streamlet(chains.ChainletBase):
    async def run_remote(self, inputs: ...) -> AsyncIterator[bytes]:  # type: ignore[misc]
        stream_writer = streaming.stream_writer(STREAM_TYPES)
        async for item in make_pydantic_items(inputs):
            yield stream_writer.yield_item(item)


class Consumer(chains.ChainletBase):
    def __init__(self, streamlet=chains.depends(Streamlet)):  # type: ignore[no-untyped-def]  # noqa: B008
        self._streamlet = streamlet

    async def run_remote(self, data: ...):  # type: ignore[no-untyped-def, misc]
        byte_stream = self._streamlet.run_remote(data)
        reader = streaming.stream_reader(STREAM_TYPES, byte_stream)
        chunks = []
        async for data in reader.read_items():
            chunks.append(data)
        return chunks  # added: what the seed's consumer collected


# --- to here ---


async def test_the_seeds_consumer_reads_what_the_seeds_streamlet_wrote() -> None:
    words = [["typed", "streams"], [], ["naïve", "café", "😀"]]
    chunks = await Consumer().run_remote(words)  # type: ignore[no-untyped-call]
    assert chunks == [MyDataChunk(words=w) for w in words]


class Header(pydantic.BaseModel):
    language: str


class Footer(pydantic.BaseModel):
    duration_s: float


async def test_the_seeds_header_and_footer_methods() -> None:
    # "If your stream types have header or footer types, corresponding yield_header and yield_footer
    # methods are available on the writer" and "the reader has async read_header and read_footer".
    types = streaming.stream_types(MyDataChunk, header_type=Header, footer_type=Footer)

    async def run_remote() -> AsyncIterator[bytes]:
        stream_writer = streaming.stream_writer(types)
        yield stream_writer.yield_header(Header(language="en"))
        yield stream_writer.yield_item(MyDataChunk(words=["hello"]))
        yield stream_writer.yield_footer(Footer(duration_s=1.5))

    reader = streaming.stream_reader(types, run_remote())
    assert await reader.read_header() == Header(language="en")
    assert [chunk async for chunk in reader.read_items()] == [MyDataChunk(words=["hello"])]
    assert await reader.read_footer() == Footer(duration_s=1.5)
