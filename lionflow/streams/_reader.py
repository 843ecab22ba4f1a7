"""The reader: frames in, pydantic models out, each part read once and in order."""

from __future__ import annotations

import weakref
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Generic, NoReturn, Self, cast

from pydantic import BaseModel, ValidationError

from lionflow.errors import ConfigurationError, StreamProtocolError, StreamTruncated, StreamValidationError
from lionflow.streams._frames import Chunk, FrameSource, describe
from lionflow.streams._types import (
    DEFAULT_MAX_FRAME_BYTES,
    MAX_LENGTH,
    FooterT,
    FrameKind,
    HeaderT,
    ItemT,
    StreamTypes,
)

# Where the consumer stands.
_HEADER = "header"  # a declared header is still to be read
_ITEMS = "items"  # read_items() may be called
_ITERATING = "iterating"  # read_items() was called and has not finished
_FOOTER = "footer"  # the items are done; a declared footer is still to be read
_FINISHED = "finished"  # every part was read
_CLOSED = "closed"  # failed, or closed by aclose()


class StreamReader(Generic[ItemT, HeaderT, FooterT]):
    """Reads a typed stream written by `StreamWriter`: `read_header()` (when declared), then
    `read_items()`, then `read_footer()` (when declared), each once and in that order.

    The stream is any async iterable of bytes (str chunks are UTF-8 encoded), split anywhere. The
    reader closes it (``aclose()``) when the stream is finished, when a read fails, and when the
    consumer stops early: on leaving ``async with reader:``, on ``await reader.aclose()``, or when an
    abandoned `read_items()` iterator is finalized. What each error means:

    - `StreamTruncated`: the stream ended inside a frame; or before a declared header or footer; or,
      with ``require_end=True``, without its end frame. Without ``require_end`` a stream that stops
      between two frames, after everything its types declare, is a clean finish.
    - `StreamProtocolError`: an unknown kind byte, a length over `max_frame_bytes`, a frame out of
      order or not declared, anything after the end frame; or reads out of order.
    - `StreamValidationError`: a frame's JSON does not validate; it names the frame's index and kind.
    """

    def __init__(
        self,
        types: StreamTypes[ItemT, HeaderT, FooterT],
        byte_stream: AsyncIterable[Chunk],
        *,
        require_end: bool = False,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if not 0 <= max_frame_bytes <= MAX_LENGTH:
            raise ConfigurationError(
                f"max_frame_bytes must be between 0 and {MAX_LENGTH}, got {max_frame_bytes}"
            )
        self._types = types
        self._frames = FrameSource(byte_stream, max_frame_bytes=max_frame_bytes)
        self._require_end = require_end
        self._stage = _HEADER if types.header_type is not None else _ITEMS
        self._footer: tuple[int, bytearray] | None = None  # the footer frame read_items() stopped at
        self._busy = False
        self._items_iterator: weakref.ref[AsyncGenerator[ItemT, None]] | None = None
        self._items_kept: AsyncGenerator[ItemT, None] | None = None
        self._entered = False

    @property
    def types(self) -> StreamTypes[ItemT, HeaderT, FooterT]:
        """The stream types this reader reads."""
        return self._types

    async def read_header(self) -> HeaderT:
        """The header. It must be read first, once, and only if the types declare one. A stream that
        ends before it raises `StreamTruncated`."""
        if self._types.header_type is None:
            raise StreamProtocolError("read_header(): these stream types declare no header")
        self._check_open("read_header()")
        if self._stage != _HEADER:
            raise StreamProtocolError("read_header() was already called; the header is read once")
        async with self._reading():
            got = await self._next()
            if got is None:
                raise StreamTruncated("the stream ended before its header (frame 0)", frame_index=0)
            kind, body = got
            if kind is not FrameKind.HEADER:
                raise StreamProtocolError(
                    f"frame 0 is {describe(kind)}; these stream types declare a header, "
                    "which must come first",
                    frame_index=0,
                )
            header = self._validate(cast("type[BaseModel]", self._types.header_type), kind, 0, body)
            self._stage = _ITEMS
        return cast(HeaderT, header)

    def read_items(self) -> StreamItems[ItemT]:
        """The items, as they arrive. Call it once, after `read_header()` when a header is declared.

        It ends at the footer (read it with `read_footer()`), at the end frame, or where the stream
        stops between frames. Once the reader has failed or was closed it raises
        `StreamProtocolError`, never a clean end. To close the stream at once when stopping early,
        leave an ``async with reader:`` block or use ``contextlib.aclosing(reader.read_items())``."""
        self._check_open("read_items()")
        if self._stage == _HEADER:
            raise StreamProtocolError(
                "read_items(): these stream types declare a header; call read_header() before read_items()"
            )
        if self._stage != _ITEMS:
            raise StreamProtocolError("read_items() was already called; a stream's items are read once")
        self._stage = _ITERATING
        items = self._items()
        # Inside `async with reader:` the reader keeps the iterator, and closes it on leaving: no
        # generator is left for the garbage collector (trio warns about each one it finalizes).
        # Outside, it keeps it weakly: an iterator dropped after a bare `break` must stay
        # collectable, so that the event loop's finalizer closes it, and the stream with it.
        self._items_iterator = weakref.ref(items)
        if self._entered:
            self._items_kept = items
        return StreamItems(self, items)

    async def read_footer(self) -> FooterT:
        """The footer, after the items. It is read once, and only if the types declare one; with no
        items in between it may follow `read_header()` directly. A stream that ends before it raises
        `StreamTruncated`."""
        footer_type = self._types.footer_type
        if footer_type is None:
            raise StreamProtocolError("read_footer(): these stream types declare no footer")
        self._check_open("read_footer()")
        if self._stage == _HEADER:
            raise StreamProtocolError("read_footer(): call read_header() first; parts are read in order")
        if self._stage == _ITERATING:
            raise StreamProtocolError(
                "read_footer(): read_items() has not finished; read it to its end first"
            )
        if self._stage == _FINISHED:
            raise StreamProtocolError("read_footer() was already called; the footer is read once")
        async with self._reading():
            if self._footer is None:  # read_items() was never called: no items may come first
                got = await self._next()
                if got is None or got[0] is not FrameKind.FOOTER:
                    self._refuse(got)
                self._footer = (self._frames.index - 1, got[1])
            index, body = self._footer
            footer = self._validate(cast("type[BaseModel]", footer_type), FrameKind.FOOTER, index, body)
            await self._finish(await self._next())
        return cast(FooterT, footer)

    async def aclose(self) -> None:
        """Stop reading and close the byte stream. Further reads raise `StreamProtocolError`."""
        if self._stage != _FINISHED:
            self._stage = _CLOSED
        items = self._items_iterator() if self._items_iterator is not None else None
        self._items_iterator = self._items_kept = None
        if items is not None and not getattr(items, "ag_running", False):
            # Finish an abandoned read_items() here, rather than leave it for the garbage collector
            # (trio warns about every async generator it has to finalize).
            await items.aclose()
        await self._frames.aclose()

    async def __aenter__(self) -> Self:
        self._entered = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _items(self) -> AsyncGenerator[ItemT, None]:
        # The hot loop: a frame already buffered costs no await, and the error paths stay out of it.
        # No busy flag here: StreamItems refuses a second concurrent `anext()`.
        frames = self._frames
        validate = self._types.item_type.model_validate_json
        footer_declared = self._types.footer_type is not None
        done = False
        try:
            while True:
                got = frames.buffered() or await frames.next()
                if got is not None and got[0] is FrameKind.ITEM:
                    try:
                        item = validate(got[1])
                    except ValidationError as error:
                        raise self._invalid(error, FrameKind.ITEM, frames.index - 1) from error
                    yield item
                elif got is not None and got[0] is FrameKind.FOOTER and footer_declared:
                    self._footer = (frames.index - 1, got[1])
                    self._stage = _FOOTER
                    done = True
                    return
                elif not footer_declared and (got is None or got[0] is FrameKind.END):
                    await self._finish(got)
                    done = True
                    return
                else:
                    self._refuse(got)
        finally:
            if not done:  # stopped early (break, error, cancellation): nobody will read on
                await self.aclose()

    async def _finish(self, got: tuple[FrameKind, bytearray] | None) -> None:
        """Check what follows the last declared part (`got`, already read): the end frame and then
        nothing, or the stream's end. Then close the stream."""
        if got is None:
            if self._require_end:
                raise StreamTruncated(
                    f"the stream ended without its end frame (frame {self._frames.index}); "
                    "it may have been cut between two frames",
                    frame_index=self._frames.index,
                )
        elif got[0] is not FrameKind.END:
            index = self._frames.index - 1
            raise StreamProtocolError(
                f"frame {index} is {describe(got[0])} after the footer; only the end frame may follow it",
                frame_index=index,
            )
        elif self._frames.pending():
            # The end frame is the end: what came with it is checked, but nothing more is awaited,
            # so a transport left open does not hold back a complete stream.
            index = self._frames.index
            raise StreamProtocolError(
                f"frame {index} comes after the end frame; nothing may", frame_index=index
            )
        self._stage = _FINISHED
        await self._frames.aclose()

    def _refuse(self, got: tuple[FrameKind, bytearray] | None) -> NoReturn:
        """Raise for what came where an item, the footer or the end was due, and may not."""
        if got is None:  # only reached with a footer declared
            index = self._frames.index
            raise StreamTruncated(f"the stream ended before its footer (frame {index})", frame_index=index)
        index = self._frames.index - 1
        kind = got[0]
        if kind is FrameKind.END:  # only reached with a footer declared
            raise StreamProtocolError(
                f"frame {index} is the end frame, but these stream types declare a footer and none came",
                frame_index=index,
            )
        if kind is FrameKind.ITEM:  # only reached when read_footer() came before read_items()
            raise StreamProtocolError(
                f"frame {index} is an item frame: read the items with read_items() before read_footer()",
                frame_index=index,
            )
        declared = self._types.header_type if kind is FrameKind.HEADER else self._types.footer_type
        why = f"the {kind.label} comes once" if declared is not None else "these stream types declare none"
        raise StreamProtocolError(
            f"frame {index} is {describe(kind)}, out of place: {why}", frame_index=index
        )

    def _validate(self, model: type[BaseModel], kind: FrameKind, index: int, body: bytearray) -> BaseModel:
        try:
            return model.model_validate_json(body)
        except ValidationError as error:
            raise self._invalid(error, kind, index) from error

    @staticmethod
    def _invalid(error: ValidationError, kind: FrameKind, index: int) -> StreamValidationError:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        return StreamValidationError(
            f"frame {index} ({describe(kind)}) does not validate as {error.title}: "
            f"{error.error_count()} error(s), first at {where}: {first['msg']}",
            frame_index=index,
            kind=kind.label,
        )

    async def _next(self) -> tuple[FrameKind, bytearray] | None:
        return await self._frames.next()

    def _check_open(self, call: str) -> None:
        if self._stage == _CLOSED:
            raise StreamProtocolError(
                f"{call}: the reader is closed (it failed or was closed); a stream is read once"
            )

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[None]:
        """One read at a time; and a failed read closes the stream, since the reader cannot resume
        mid-frame after an error or a cancellation."""
        if self._busy:
            raise StreamProtocolError("another task is reading this stream; read a stream from one task")
        self._busy = True
        try:
            yield
        except BaseException:
            await self.aclose()
            raise
        finally:
            self._busy = False


class StreamItems(AsyncIterator[ItemT]):
    """What `StreamReader.read_items()` returns: an async iterator of the items, with ``aclose()``.

    Unlike a bare async generator, which just stops once it has failed or been closed, it raises
    `StreamProtocolError` when read on after its reader failed or was closed (so a consumer that
    skips a bad item never mistakes the failure for the stream's end), and when a second task reads
    it while another's read is waiting for bytes."""

    __slots__ = ("_items", "_reader", "_running")

    def __init__(self, reader: StreamReader[ItemT, Any, Any], items: AsyncGenerator[ItemT, None]) -> None:
        self._reader = reader
        self._items = items
        self._running = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ItemT:
        if self._running:
            raise StreamProtocolError(
                "another task is reading this stream's items; read a stream from one task"
            )
        self._reader._check_open("read_items()")
        self._running = True
        try:
            return await self._items.__anext__()
        finally:
            self._running = False

    async def aclose(self) -> None:
        """Stop reading the items and close the byte stream (unless the items were all read)."""
        await self._items.aclose()


def stream_reader(
    types: StreamTypes[ItemT, HeaderT, FooterT],
    byte_stream: AsyncIterable[Chunk],
    *,
    require_end: bool = False,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> StreamReader[ItemT, HeaderT, FooterT]:
    """A reader of `byte_stream` for `types` (see `StreamReader`)::

    reader = streams.stream_reader(TYPES, byte_stream)
    async for item in reader.read_items():
        ...
    """
    return StreamReader(types, byte_stream, require_end=require_end, max_frame_bytes=max_frame_bytes)
