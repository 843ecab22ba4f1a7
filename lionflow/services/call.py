"""`ModelCall`: one model call that can be awaited (-> Response) or iterated (-> Chunks).

The driver below holds everything providers share: the concurrency slot and rate limiter, retries
before the first chunk, the four timeouts, assembling the Response, and closing the provider stream
however the call ends.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
from pydantic import BaseModel

from lionflow.errors import (
    ConfigurationError,
    ProviderError,
    ProviderTimeout,
    StreamClosed,
    StreamConsumed,
    TimeoutPhase,
)
from lionflow.services.chunk import Chunk
from lionflow.services.providers.base import ChunkStream, ModelRequest
from lionflow.services.response import Response, ResponseAssembler
from lionflow.structured import stream_partial
from lionflow.structured.partial_model import json_document

if TYPE_CHECKING:
    from lionflow.services.imodel import iModel

__all__ = ["ModelCall"]

T = TypeVar("T")

# Closing a provider stream must finish even while the caller is being cancelled, but never hang.
_CLOSE_GRACE = 5.0


class _CallState:
    """What the driver shares with its ModelCall. Kept apart so that the driver generator does not
    reference the ModelCall: dropping the call then finalizes the generator at once."""

    __slots__ = ("attempts", "error", "response")

    def __init__(self) -> None:
        self.response: Response | None = None
        self.error: BaseException | None = None
        self.attempts = 0


class _Deadline:
    """Turns a phase timeout plus the total deadline into one wait limit, and names the culprit."""

    __slots__ = ("at", "total")

    def __init__(self, total: float | None) -> None:
        self.total = total
        self.at = None if total is None else time.monotonic() + total

    def limit(self, seconds: float | None, phase: TimeoutPhase) -> tuple[float | None, TimeoutPhase, float]:
        if self.at is None or self.total is None:
            return seconds, phase, seconds or 0.0
        remaining = self.at - time.monotonic()
        if seconds is None or remaining < seconds:
            return max(remaining, 0.0), "total", self.total
        return seconds, phase, seconds


async def _bounded(
    awaitable: Awaitable[T], seconds: float | None, phase: TimeoutPhase, deadline: _Deadline, provider: str
) -> T:
    limit, culprit, configured = deadline.limit(seconds, phase)
    if limit is None:
        return await awaitable
    with anyio.move_on_after(limit) as scope:
        return await awaitable
    assert scope.cancelled_caught
    raise ProviderTimeout(culprit, configured, provider=provider)


async def _next_chunk(
    stream: ChunkStream, seconds: float | None, phase: TimeoutPhase, deadline: _Deadline, provider: str
) -> Chunk | None:
    try:
        return await _bounded(stream.__anext__(), seconds, phase, deadline, provider)
    except StopAsyncIteration:
        return None


async def _close_quietly(stream: ChunkStream | None) -> None:
    if stream is None:
        return
    # The call's own outcome matters more than a failed close, so a close error is dropped.
    with anyio.move_on_after(_CLOSE_GRACE, shield=True), contextlib.suppress(Exception):
        await stream.aclose()


async def _drive(model: iModel, request: ModelRequest, state: _CallState) -> AsyncGenerator[Chunk, None]:
    started = time.perf_counter()
    timeout = model.timeout
    deadline = _Deadline(timeout.total)
    provider = model.provider
    assembler = ResponseAssembler(model=request.model, provider=provider)
    first_chunk_at: float | None = None
    stream: ChunkStream | None = None
    holding_slot = False
    try:
        attempt = 0
        while True:
            state.attempts = attempt + 1
            try:
                if model._semaphore is not None:
                    await _bounded(model._semaphore.acquire(), None, "total", deadline, provider)
                    holding_slot = True
                if model._rate_limiter is not None:
                    await _bounded(model._rate_limiter.acquire(), None, "total", deadline, provider)
                stream = await _bounded(
                    model.adapter.open(request), timeout.connect, "connect", deadline, provider
                )
                chunk = await _next_chunk(stream, timeout.first_chunk, "first_chunk", deadline, provider)
                break
            except ProviderError as error:
                # Nothing has reached the caller yet, so a retry cannot replay content.
                await _close_quietly(stream)
                stream = None
                if holding_slot and model._semaphore is not None:
                    model._semaphore.release()
                    holding_slot = False
                if not error.retryable or attempt >= model.retry.max_retries:
                    raise
                wait = model.retry.delay(attempt, error)
                if wait is None or (deadline.at is not None and time.monotonic() + wait >= deadline.at):
                    raise
                await anyio.sleep(wait)
                attempt += 1

        if chunk is not None:
            first_chunk_at = time.perf_counter() - started
        if timeout.idle is None and deadline.at is None:
            # No timeout to watch: read the stream directly, the cheapest path per chunk.
            while chunk is not None:
                assembler.add(chunk)
                yield chunk
                try:
                    chunk = await stream.__anext__()
                except StopAsyncIteration:
                    chunk = None
        else:
            while chunk is not None:
                assembler.add(chunk)
                yield chunk
                chunk = await _next_chunk(stream, timeout.idle, "idle", deadline, provider)

        if not assembler.saw_finish:
            # The adapter contract promises a finish chunk; keep the promise to the caller regardless.
            finish = Chunk(
                type="finish", finish_reason="stop", metadata={"provider": provider, "synthesized": True}
            )
            assembler.add(finish)
            yield finish
        response = assembler.build(duration=time.perf_counter() - started, time_to_first_chunk=first_chunk_at)
        structure = request.params.get("response_format")
        if structure is not None and response.finish_reason != "tool_calls":
            # (a turn that ends calling the caller's own tools has no structured answer to parse)
            document = json_document(_structured_text(response))
            if isinstance(structure, type) and issubclass(structure, BaseModel):
                # the whole text, strictly validated; a reply that does not validate fails the call
                response.parsed = structure.model_validate_json(document)
            elif isinstance(structure, dict):
                response.parsed = json.loads(document)  # a JSON schema: the value, not validated here
        state.response = response
    except BaseException as exc:
        cancelled = isinstance(exc, GeneratorExit | anyio.get_cancelled_exc_class())
        state.response = assembler.build(
            duration=time.perf_counter() - started,
            time_to_first_chunk=first_chunk_at,
            incomplete=True,
            finish_reason="cancelled" if cancelled else "error",
            error=None if cancelled else exc,
        )
        if not cancelled:
            state.error = exc
        if isinstance(exc, ProviderError) and exc.response is None:
            exc.response = state.response
        raise
    finally:
        await _close_quietly(stream)
        if holding_slot and model._semaphore is not None:
            model._semaphore.release()


def _structured_text(response: Response) -> str:
    # structured output arrives as text, or as the arguments of a forced tool call (Anthropic)
    if response.text.strip() or not response.tool_calls:
        return response.text
    return response.tool_calls[0].raw_arguments


class ModelCall:
    """One call to a model, returned by `iModel.invoke()` and `iModel.stream()`.

    Await it for the `Response`, or iterate it for `Chunk`s as they arrive (both work whatever the
    model's `stream=` flag says). Use it as an async context manager for guaranteed cleanup::

        response = await model.invoke(messages=msgs)

        async for chunk in model.invoke(messages=msgs):
            print(chunk, end="", flush=True)

        async with model.stream(messages=msgs) as call:
            async for chunk in call:
                ...
        print(call.response.usage)

    A call streams once: iterating it again raises `StreamConsumed`. Leaving an ``async for`` early
    closes the provider stream: at once on cancellation or when the `async with` block ends, and as
    soon as the call object is dropped after a ``break`` (``await call.aclose()`` closes it on the
    spot). `response` holds the result afterwards, partial (``incomplete=True``) if the call ended by
    an error or cancellation.
    """

    def __init__(self, model: iModel, request: ModelRequest) -> None:
        self.model = model
        self.request = request
        self._state = _CallState()
        self._gen: AsyncGenerator[Chunk, None] | None = None
        self._status: Literal["new", "streaming", "closed"] = "new"

    @property
    def response(self) -> Response | None:
        """The assembled Response once the call has ended (partial if it failed), else None."""
        return self._state.response

    @property
    def attempts(self) -> int:
        """How many times the request was sent (1 plus the retries)."""
        return self._state.attempts

    def _start(self) -> AsyncGenerator[Chunk, None]:
        if self._status == "closed":
            raise StreamClosed("this call was closed before it was read; call invoke() again")
        if self._status != "new":
            raise StreamConsumed("this call was already iterated; a call streams once (see .response)")
        self._status = "streaming"
        self._gen = _drive(self.model, self.request, self._state)
        return self._gen

    def __aiter__(self) -> ModelCall:
        self._start()
        return self

    def __anext__(self) -> Awaitable[Chunk]:
        # The driver's own awaitable, not a coroutine around it: this runs once per chunk.
        gen = self._gen if self._status == "streaming" else self._start()
        assert gen is not None
        return gen.__anext__()

    def __await__(self) -> Generator[object, None, Response]:
        return self._collect().__await__()

    async def _collect(self) -> Response:
        if self._status == "new":
            self._start()
        if self._status == "closed":
            raise StreamClosed("this call was closed before it was read; call invoke() again")
        assert self._gen is not None
        async for _ in self._gen:  # the rest of the chunks; nothing when the stream already ended
            pass
        if self._state.error is not None:
            raise self._state.error
        assert self._state.response is not None
        return self._state.response

    async def partials(self) -> AsyncIterator[Any]:
        """Partially filled `response_format` objects while the JSON arrives, then the final one.

        ::

            async with model.stream(messages, response_format=Person) as call:
                async for person in call.partials():
                    print(person)
            call.response.parsed   # the strictly validated Person

        The call streams once: use either `partials()` or plain iteration, not both.
        """
        structure = self.request.params.get("response_format")
        if not (isinstance(structure, type) and issubclass(structure, BaseModel)):
            raise ConfigurationError("partials() needs response_format=<a pydantic model class> on the call")
        async for partial in stream_partial(self, structure):
            yield partial

    async def aclose(self) -> None:
        """Stop the call and close the provider stream. Safe to call more than once.

        Afterwards `response` holds what had arrived (``incomplete=True`` if the stream had not
        ended), and awaiting the call returns it.
        """
        if self._gen is not None:
            await self._gen.aclose()
        elif self._status == "new":
            self._status = "closed"

    async def __aenter__(self) -> ModelCall:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
