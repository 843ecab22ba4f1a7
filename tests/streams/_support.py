"""Models, byte sources and frame builders shared by the typed-stream tests."""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Iterable, Sequence

import anyio
import anyio.lowlevel
from hypothesis import HealthCheck, settings
from pydantic import BaseModel

# Under CI the same examples every run (a red run must be reproducible); elsewhere new ones each time.
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=bool(os.environ.get("CI")),
)

# The kind bytes, spelled out here so that the tests pin the wire format instead of reusing it.
HEADER, ITEM, FOOTER, END = 2, 3, 4, 5


class Job(BaseModel):
    name: str
    tags: list[str] = []


class Segment(BaseModel):
    text: str
    index: int


class Summary(BaseModel):
    count: int
    note: str = ""


def raw(kind: int, body: bytes | str = b"") -> bytes:
    """A frame built by hand: kind byte, big-endian uint32 length, body."""
    data = body.encode() if isinstance(body, str) else body
    return struct.pack(">BI", kind, len(data)) + data


def split(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    """`data` cut into chunks of the given sizes, cycled (a size of 0 gives an empty chunk)."""
    chunks = []
    position = 0
    for size in itertools.cycle(sizes or [len(data) or 1]):
        if position >= len(data):
            break
        chunks.append(data[position : position + size])
        position += size
    return chunks


class ByteSource:
    """An async byte stream that records how far it was read and whether it was closed. With
    ``hang=True`` it never ends: a reader that needs more than it was given waits forever."""

    def __init__(self, chunks: Iterable[bytes | str], *, hang: bool = False) -> None:
        self._chunks = list(chunks)
        self._hang = hang
        self.taken = 0  # chunks handed out
        self.closed = anyio.Event()
        self.waiting = anyio.Event()  # set once the reader waits past the last chunk

    @property
    def bytes_taken(self) -> int:
        return sum(len(chunk) for chunk in self._chunks[: self.taken])

    def __aiter__(self) -> ByteSource:
        return self

    async def __anext__(self) -> bytes | str:
        await anyio.lowlevel.checkpoint()
        if self.closed.is_set():
            raise AssertionError("read after aclose()")
        if self.taken == len(self._chunks):
            if self._hang:
                self.waiting.set()
                await anyio.sleep_forever()
            raise StopAsyncIteration
        self.taken += 1
        return self._chunks[self.taken - 1]

    async def aclose(self) -> None:
        self.closed.set()
