"""Frames out of byte chunks split anywhere, in linear time, never reading past what a frame needs."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import anyio

from lionflow.errors import StreamProtocolError, StreamTruncated
from lionflow.streams._types import PREFIX, FrameKind

Chunk = bytes | bytearray | memoryview | str
_KINDS = {kind.value: kind for kind in FrameKind}  # a dict lookup: FrameKind(byte) costs more per frame


def _article(kind: FrameKind) -> str:
    return "an" if kind is FrameKind.ITEM or kind is FrameKind.END else "a"


def describe(kind: FrameKind) -> str:
    """``"an item frame"``, ``"a header frame"``: for messages."""
    return f"{_article(kind)} {kind.label} frame"


class FrameSource:
    """Reads frames one at a time from an async iterable of bytes (str chunks are UTF-8 encoded).

    The chunks land in one bytearray read from an offset; the consumed front is dropped only once it
    is at least as long as what remains, so every byte is copied a bounded number of times however
    the stream is split. A frame's kind is checked as soon as its first byte arrives and its length
    as soon as its four bytes do, so a corrupt stream fails at once instead of being awaited.
    """

    def __init__(self, byte_stream: AsyncIterable[Chunk], *, max_frame_bytes: int) -> None:
        self._stream = byte_stream
        self._chunks: AsyncIterator[Chunk] | None = None
        self._buffer = bytearray()
        self._offset = 0
        self._ended = False
        self._closed = False
        self._max_frame_bytes = max_frame_bytes
        self.index = 0  # the 0-based position of the next frame in the stream

    def buffered(self) -> tuple[FrameKind, bytearray] | None:
        """The next frame if it is already buffered whole, else None (then await `next()`). The
        common case, a socket's chunk holding many frames, costs no await per frame."""
        buffer, offset = self._buffer, self._offset
        available = len(buffer) - offset
        if available < PREFIX.size:
            return None
        kind = self._kind(buffer[offset])
        length = int.from_bytes(buffer[offset + 1 : offset + PREFIX.size], "big")
        if available < PREFIX.size + length:
            return None
        self._check_length(kind, length)
        start = offset + PREFIX.size
        self._offset = start + length
        self.index += 1
        return kind, buffer[start : start + length]

    async def next(self) -> tuple[FrameKind, bytearray] | None:
        """The next frame's kind and body, or None when the stream ends cleanly between frames."""
        whole = self.buffered()
        if whole is not None:
            return whole
        index = self.index
        if not await self._fill(1):
            return None
        kind = self._kind(self._buffer[self._offset])
        if not await self._fill(PREFIX.size):
            have = len(self._buffer) - self._offset - 1
            raise StreamTruncated(
                f"the stream ended inside frame {index} ({describe(kind)}): "
                f"{have} of its 4 length bytes came",
                frame_index=index,
            )
        _, length = PREFIX.unpack_from(self._buffer, self._offset)
        self._check_length(kind, length)
        # _fill() may move the buffered bytes: offsets are taken after it.
        if not await self._fill(PREFIX.size + length):
            have = len(self._buffer) - self._offset - PREFIX.size
            raise StreamTruncated(
                f"the stream ended inside frame {index} ({describe(kind)}): "
                f"{have} of its {length} body bytes came",
                frame_index=index,
            )
        start = self._offset + PREFIX.size
        body = self._buffer[start : start + length]
        self._offset = start + length
        self.index += 1
        return kind, body

    def _kind(self, byte: int) -> FrameKind:
        kind = _KINDS.get(byte)
        if kind is None:
            raise StreamProtocolError(
                f"frame {self.index} has an unknown kind byte 0x{byte:02x} (known: "
                + ", ".join(f"0x{k.value:02x} {k.label}" for k in FrameKind)
                + "); the bytes are not a typed stream, or not from its start",
                frame_index=self.index,
            )
        return kind

    def _check_length(self, kind: FrameKind, length: int) -> None:
        if kind is FrameKind.END and length:
            raise StreamProtocolError(
                f"frame {self.index} is an end frame of length {length}; it must be 0", frame_index=self.index
            )
        if length > self._max_frame_bytes:
            raise StreamProtocolError(
                f"frame {self.index} ({describe(kind)}) claims {length} bytes, over max_frame_bytes="
                f"{self._max_frame_bytes}; the stream is corrupt (or raise the limit)",
                frame_index=self.index,
            )

    def pending(self) -> int:
        """How many bytes past the last frame read are buffered (already arrived, not yet read)."""
        return len(self._buffer) - self._offset

    async def aclose(self) -> None:
        """Close the byte stream (its iterator's `aclose()`, else the iterable's), once. Shielded:
        this is cleanup, and it also runs while the reader is being cancelled."""
        if self._closed:
            return
        self._closed = self._ended = True
        self._buffer = bytearray()
        self._offset = 0
        if getattr(self._chunks, "ag_running", False):
            # Another task's read waits inside this async generator, which Python cannot close
            # while it runs ("already running"); say what works instead.
            raise StreamProtocolError(
                "another task is reading this stream (waiting for its bytes); cancel that task to stop "
                "the read, and the reader closes the stream as the read ends",
                frame_index=self.index,
            )
        aclose = getattr(self._chunks, "aclose", None) or getattr(self._stream, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()

    async def _fill(self, size: int) -> bool:
        """Read chunks until `size` bytes past the offset are buffered; False if the stream ends first."""
        while len(self._buffer) - self._offset < size:
            if self._ended:
                return False
            if self._chunks is None:
                self._chunks = aiter(self._stream)
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._ended = True
                return False
            if isinstance(chunk, str):
                try:
                    chunk = chunk.encode()
                except UnicodeEncodeError as error:  # a lone surrogate: no UTF-8 encodes it
                    raise StreamProtocolError(
                        f"the byte stream yielded a str that is not text ({error.reason}, at frame "
                        f"{self.index}); a typed stream is UTF-8 bytes",
                        frame_index=self.index,
                    ) from error
            if self._offset and self._offset >= len(self._buffer) - self._offset:
                # Drop the consumed front only once it outweighs the rest: amortized linear.
                del self._buffer[: self._offset]
                self._offset = 0
            try:
                self._buffer += chunk
            except TypeError:
                what = type(chunk).__name__
                raise TypeError(f"the byte stream yielded {what}; a typed stream is bytes (or str)") from None
        return True
