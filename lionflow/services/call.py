"""`ModelCall`: one model call that can be awaited (-> Response) or iterated (-> Chunks).

The work of the call (slot, retries, timeouts, assembling the Response, closing the provider
stream) is done by its driver (`lionflow.services.driver`); this module is the object users hold.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Awaitable, Generator
from types import TracebackType
from typing import Any, Generic, Literal, cast

import anyio
from pydantic import BaseModel
from typing_extensions import TypeVar

from lionflow.errors import ConfigurationError, StreamClosed, StreamConsumed
from lionflow.guards.handler import StreamingHandler
from lionflow.services.chunk import Chunk
from lionflow.services.driver import CallContext, CallState, drive, wait_done
from lionflow.services.providers.base import ModelRequest
from lionflow.services.response import Response
from lionflow.structured import stream_partial
from lionflow.structured.items import list_item_type, stream_items

T = TypeVar("T", default=Any)  # the structured type: `response.parsed`, what `partials()` yields
M = TypeVar("M", bound=BaseModel)
E = TypeVar("E")  # an element of a ``list[...]`` reply


class _Truncated(Exception):
    """Ends `partials()` of a stopped call; never leaves it."""


class ModelCall(Generic[T]):
    """One call to a model, returned by `iModel.invoke()` and `iModel.stream()`.

    Await it for the `Response`, or iterate it for `Chunk`s as they arrive (both work whatever the
    model's `stream=` flag says). Keep the call in an ``async with`` block when you use it after the
    loop; the block closes it however it is left::

        async with model.stream(messages=msgs) as call:
            async for chunk in call:
                ...
        print(call.response.usage)

        response = await model.invoke(messages=msgs)

        async for chunk in model.invoke(messages=msgs):     # not kept: fine without the block
            print(chunk, end="", flush=True)

    While the call runs it holds the provider stream (an HTTP connection) and, with
    ``max_concurrent``, one of the model's slots. They are released when the stream ends, on an
    error or cancellation, when the `async with` block ends, on `aclose()`, or when a call that is no
    longer referenced is collected. A call that is still referenced after a ``break`` holds them until
    one of those happens, so a held call belongs in an ``async with`` block.

    A call streams once: iterating it again raises `StreamConsumed`. `response` holds the result
    afterwards, partial (``incomplete=True``) if the call ended by an error, a cancellation or a stop.

    `request` is what was sent (model id, messages, parameters), and `context` what the call shares
    with every call of its model (provider, adapter, timeouts, retries, limits).

    A call made with ``response_format=Model`` is a ``ModelCall[Model]`` to a type checker: its
    response is a ``Response[Model]`` and `partials()` yields `Model` objects.
    """

    def __init__(
        self,
        context: CallContext,
        request: ModelRequest,
        *,
        streaming_handler: StreamingHandler[Any] | None = None,
    ) -> None:
        self.context = context
        self.request = request
        self._state = CallState(streaming_handler)
        self._gen: types.AsyncGeneratorType[Chunk, None] | None = None
        # new -> streaming -> stopped (aclose() after the start); new -> closed (aclose() before it)
        self._status: Literal["new", "streaming", "stopped", "closed"] = "new"

    @property
    def response(self) -> Response[T] | None:
        """The assembled Response once the call has ended (partial if it failed), else None."""
        return self._state.response

    @property
    def attempts(self) -> int:
        """How many times the request was sent (1 plus the retries)."""
        return self._state.attempts

    def _start(self) -> types.AsyncGeneratorType[Chunk, None]:
        if self._status == "closed":
            raise StreamClosed("this call was closed before it was read; call invoke() again")
        if self._status != "new":
            raise StreamConsumed("this call was already iterated; a call streams once (see .response)")
        self._status = "streaming"
        gen = drive(self.context, self.request, self._state)
        assert isinstance(gen, types.AsyncGeneratorType)
        self._gen = gen
        return gen

    def __aiter__(self) -> ModelCall[T]:
        self._start()
        return self

    def __anext__(self) -> Awaitable[Chunk]:
        # The driver's own awaitable, not a coroutine around it: this runs once per chunk.
        if self._status == "streaming":
            gen = self._gen
        elif self._status == "stopped":
            return self._after_stop()
        else:
            gen = self._start()
        assert gen is not None
        return gen.__anext__()

    async def _after_stop(self) -> Chunk:
        # aclose() from another task may still be closing the stream: end the loop once it has.
        await wait_done(self._state.done)
        raise StopAsyncIteration

    def __await__(self) -> Generator[object, None, Response[T]]:
        return self._collect().__await__()

    async def _collect(self) -> Response[T]:
        if self._status == "new":
            self._start()
        if self._status == "closed":
            raise StreamClosed("this call was closed before it was read; call invoke() again")
        if self._status == "streaming":
            assert self._gen is not None
            async for _ in self._gen:  # the rest of the chunks; nothing when the stream already ended
                pass
        else:
            await wait_done(self._state.done)
        if self._state.error is not None:
            raise self._state.error
        if self._state.response is None:
            raise StreamClosed("this call was closed before it was read; call invoke() again")
        return self._state.response

    async def partials(self: ModelCall[M], *, every_change: bool = False) -> AsyncIterator[M]:
        """Partially filled `response_format` objects while the JSON arrives, then the final one.

        ::

            async with model.stream(messages, response_format=Person) as call:
                async for person in call.partials():
                    print(person)
            call.response.parsed   # the strictly validated Person

        The call streams once: use either `partials()` or plain iteration, not both. A call stopped
        by `aclose()` ends the loop quietly after the last partial object: its truncated JSON is not
        validated. With ``reply_format="toon"`` the reply is TOON, read the same way
        (`lionflow.toon.PartialTOON`). A long string arriving faster than 60 deltas a second is shown
        less often (`lionflow.structured.PartialObjects` says when); ``every_change=True`` shows
        every change.
        """
        structure = self.request.expected
        if not (isinstance(structure, type) and issubclass(structure, BaseModel)):
            raise ConfigurationError("partials() needs response_format=<a pydantic model class> on the call")
        model = cast("type[M]", structure)  # the class this call was typed with: its response_format
        try:
            async for partial in stream_partial(
                self._until_stopped(), model, format=self.request.reply_format, every_change=every_change
            ):
                yield partial
        except _Truncated:
            return

    async def items(self: ModelCall[list[E]]) -> AsyncIterator[E]:
        """The elements of a ``response_format=list[Model]`` reply, each the moment it closes in
        the streamed JSON, validated as `Model`::

            async with model.stream(messages, response_format=list[Idea]) as call:
                async for idea in call.items():     # the first idea while the second is written
                    print(idea.title)
            call.response.parsed   # the whole list, strictly validated: the same ideas

        The call streams once: use either `items()` or plain iteration, not both. A call stopped by
        `aclose()` ends the loop quietly after the last complete element.
        """
        item_type = list_item_type(self.request.params.get("response_format"))
        if self.request.reply_format == "toon":
            raise ConfigurationError(
                "items() reads JSON list replies; a TOON reply gives its list once parsed"
            )
        if item_type is None:
            raise ConfigurationError(
                "items() needs response_format=list[<a pydantic model class>] on the call"
            )
        try:
            async for item in stream_items(self._until_stopped(), item_type):
                yield item
        except _Truncated:
            return

    async def _until_stopped(self) -> AsyncIterator[Chunk]:
        # The call's chunks, ended by `_Truncated` rather than by the end of the stream when the call
        # was stopped, so that `stream_partial` does not validate the truncated text.
        try:
            async for chunk in self:
                yield chunk
        finally:
            with anyio.CancelScope(shield=True):
                await self.aclose()
        if self._state.response is None or self._state.response.incomplete:
            raise _Truncated

    async def aclose(self) -> None:
        """Stop the call, close the provider stream and free its slot, from any task.

        Safe to call more than once. When another task is iterating or awaiting the call (a stop
        button), its loop ends as if the stream had ended, and its await returns the partial
        response; `aclose()` returns once that task has finished cleaning up. Afterwards `response`
        holds what had arrived (``incomplete=True``, ``finish_reason="cancelled"`` if the stream had
        not ended).
        """
        if self._status == "new":
            self._status = "closed"
            return
        if self._status != "streaming":
            await wait_done(self._state.done)
            return
        self._status = "stopped"
        gen = self._gen
        assert gen is not None
        if gen.ag_running:
            # Another task is inside the driver, waiting on the provider: interrupt that wait and
            # let that task end the stream, record the response and free the slot.
            self._state.stop()
            await wait_done(self._state.done)
        else:
            await gen.aclose()

    async def __aenter__(self) -> ModelCall[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # A started call dropped unfinished (a ``break`` in the seed form): close its driver where the
        # event loop would not do so quietly by itself (see `close_when_dropped`).
        state = self._state
        if state.close_dropped is not None and state.done is not None and not state.done.is_set():
            assert self._gen is not None
            state.close_dropped(self._gen)
