"""The driver of one model call: everything providers share, behind `ModelCall`.

It holds the concurrency slot and rate limiter, retries before the first chunk, the four timeouts,
assembling the Response, and closing the provider stream however the call ends.

Stopping from another task (`ModelCall.aclose()` while a task waits in the driver for the
provider) and the idle and total timeouts must interrupt that wait. Before the first chunk a cancel
scope does it (once per call). After it, a scope per read would cost several microseconds a chunk
(in a real stream nearly every read waits), so the call's one `ReadWatch` does it instead: a
deadline that moves with each read, one timer, and an interrupt aimed at the task while it waits
in a read. The driver never yields to its consumer inside a scope or a watched read (PEP 789).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import anyio
import sniffio
from pydantic import BaseModel, TypeAdapter

from lionflow.errors import (
    PartialJSONError,
    ProviderError,
    ProviderTimeout,
    StructuredOutputError,
    TimeoutPhase,
)
from lionflow.guards.guarded import GuardedStream
from lionflow.guards.handler import StreamingHandler
from lionflow.guards.output import InputGuard, OutputGuard
from lionflow.services.chunk import Chunk
from lionflow.services.policy import RateLimiter, RetryPolicy, Timeout
from lionflow.services.providers._structured import parse_list
from lionflow.services.providers.base import ChunkStream, ModelRequest, Provider
from lionflow.services.response import Response, ResponseAssembler
from lionflow.services.watch import Interrupted, ReadWatch, read_watch
from lionflow.structured.items import list_item_type
from lionflow.structured.partial_model import json_document

T = TypeVar("T")

# Closing a provider stream must finish even while the caller is being cancelled, but never hang.
_CLOSE_GRACE = 5.0
# How long aclose() from another task waits for the iterating task to finish recording.
_STOP_GRACE = 2 * _CLOSE_GRACE


@dataclass(frozen=True, slots=True)
class CallContext:
    """What every call of one model shares, built once by its `iModel` and handed to each call.

    The driver reads only this (never the iModel), so a call needs no reference to its model.
    `slots` bounds the calls in flight (``max_concurrent``) and `rate_limiter` the requests started
    per minute (``requests_per_minute``); both are shared by all calls of the model, None when off.
    `guards` check the request before it is sent and the answer's text as it streams
    (`lionflow.guards`): the model's, then the call's.
    """

    adapter: Provider
    provider: str
    timeout: Timeout
    retry: RetryPolicy
    slots: anyio.Semaphore | None = None
    rate_limiter: RateLimiter | None = None
    guards: tuple[InputGuard | OutputGuard, ...] = ()


class CallState:
    """What the driver shares with its ModelCall. Kept apart so that the driver generator does not
    reference the ModelCall: dropping the call then finalizes the generator at once.

    `scope` is the cancel scope around the driver's setup (slot, connect, first chunk), and `watch`
    watches its reads of the chunks after that: `stop()` cancels or interrupts them, so that a task
    inside the driver returns at once.
    """

    __slots__ = (
        "attempts",
        "close_dropped",
        "done",
        "error",
        "handler",
        "response",
        "scope",
        "stop_requested",
        "watch",
    )

    def __init__(self, handler: StreamingHandler[Any] | None = None) -> None:
        self.handler = handler  # gets the call's text as the caller does, and its end
        self.response: Response | None = None
        self.error: BaseException | None = None
        self.attempts = 0
        self.scope: anyio.CancelScope | None = None
        self.watch: ReadWatch | None = None
        self.stop_requested = False
        self.done: anyio.Event | None = None  # set when the driver has ended and cleaned up
        self.close_dropped: Callable[[AsyncGenerator[Any, None]], None] | None = None

    def stop(self) -> None:
        self.stop_requested = True
        if self.scope is not None:
            self.scope.cancel()
        if self.watch is not None:
            self.watch.interrupt()


async def wait_done(done: anyio.Event | None) -> None:
    """Wait (bounded) until a driver that was started has ended and cleaned up."""
    if done is not None and not done.is_set():
        with anyio.move_on_after(_STOP_GRACE):
            await done.wait()


def close_when_dropped() -> Callable[[AsyncGenerator[Any, None]], None] | None:
    """How to close a started driver generator whose owner was dropped unfinished; None where the
    event loop already does it quietly (asyncio).

    trio closes an abandoned async generator in a system task too, but warns (ResourceWarning) that
    the user should have closed it. A dropped call or turn is lionflow's to clean up, as on asyncio,
    so on trio the owner's ``__del__`` hands the generator to a system task itself.
    """
    if sniffio.current_async_library() != "trio":
        return None
    import trio

    token = trio.lowlevel.current_trio_token()

    def close(generator: AsyncGenerator[Any, None]) -> None:
        async def aclose() -> None:
            with contextlib.suppress(Exception):  # a system task must not fail; the driver logs nothing
                await generator.aclose()

        def spawn() -> None:
            # the run may be shutting down (its system nursery closed): then the run closes it
            with contextlib.suppress(RuntimeError):
                trio.lowlevel.spawn_system_task(aclose)

        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(spawn)

    return close


class _Deadline:
    """Turns a phase timeout plus the total deadline into one wait limit, and names the culprit."""

    __slots__ = ("at", "total")

    def __init__(self, total: float | None) -> None:
        self.total = total
        self.at = None if total is None else time.monotonic() + total

    def loop_at(self) -> float | None:
        """The total deadline in the event loop's clock (which may not be `time.monotonic`)."""
        return None if self.at is None else anyio.current_time() + (self.at - time.monotonic())

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
    """`awaitable` within its timeout (the setup steps; `stop()` cancels the scope around them)."""
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


async def _scoped_read(
    stream: ChunkStream, state: CallState, idle: float | None, deadline: _Deadline, provider: str
) -> Chunk | None:
    """The next chunk under a cancel scope of its own that `stop()` cancels: what the driver does
    where no `ReadWatch` can interrupt a read (see `read_watch`). Several microseconds a read."""
    with anyio.CancelScope() as scope:
        state.scope = scope
        if state.stop_requested:
            scope.cancel()
        try:
            return await _next_chunk(stream, idle, "idle", deadline, provider)
        except ProviderError:
            if not scope.cancel_called:
                raise
            # stopped; the read reported it as its own error
        finally:
            state.scope = None
    raise Interrupted


async def _close_quietly(stream: ChunkStream | None) -> None:
    if stream is None:
        return
    # The call's own outcome matters more than a failed close, so a close error is dropped.
    with anyio.move_on_after(_CLOSE_GRACE, shield=True), contextlib.suppress(Exception):
        await stream.aclose()


async def drive(context: CallContext, request: ModelRequest, state: CallState) -> AsyncGenerator[Chunk, None]:
    state.done = anyio.Event()
    state.close_dropped = close_when_dropped()
    started = time.perf_counter()
    timeout = context.timeout
    deadline = _Deadline(timeout.total)
    provider = context.provider
    slots = context.slots
    assembler = ResponseAssembler(model=request.model, provider=provider)
    first_chunk_at: float | None = None
    stream: ChunkStream | None = None
    holding_slot = False
    output_guards = [guard for guard in context.guards if isinstance(guard, OutputGuard)]
    # Text held for its checks is no silence of the provider: a guarded stream times the provider's
    # own reads (first chunk, idle); the driver keeps the total.
    first_chunk, idle = (None, None) if output_guards else (timeout.first_chunk, timeout.idle)
    try:
        for guard in context.guards:
            if isinstance(guard, InputGuard):  # before anything is sent; a violation sends nothing
                await guard.enforce(request.messages)
        # Everything before the first chunk, under one scope that aclose() from another task cancels.
        with anyio.CancelScope() as setup:
            state.scope = setup
            attempt = 0
            while True:
                state.attempts = attempt + 1
                try:
                    if slots is not None:
                        await _bounded(slots.acquire(), None, "total", deadline, provider)
                        holding_slot = True
                    if context.rate_limiter is not None:
                        await _bounded(context.rate_limiter.acquire(), None, "total", deadline, provider)
                    stream = await _bounded(
                        context.adapter.open(request), timeout.connect, "connect", deadline, provider
                    )
                    if output_guards:  # what the call reads is what the guards let through
                        # (a ChunkStream in all but name: guards, a leaf, do not import the adapters)
                        guarded = GuardedStream(
                            stream,
                            output_guards,
                            first_chunk=timeout.first_chunk,
                            idle=timeout.idle,
                            provider=provider,
                        )
                        stream = cast(ChunkStream, guarded)
                    chunk = await _next_chunk(stream, first_chunk, "first_chunk", deadline, provider)
                    break
                except ProviderError as error:
                    # Nothing has reached the caller yet, so a retry cannot replay content.
                    await _close_quietly(stream)
                    stream = None
                    if holding_slot and slots is not None:
                        slots.release()
                        holding_slot = False
                    if setup.cancel_called:  # stopped; the SDK reported it as its own error
                        raise Interrupted from None
                    if not error.retryable or attempt >= context.retry.max_retries:
                        raise
                    wait = context.retry.delay(attempt, error)
                    if wait is None or (deadline.at is not None and time.monotonic() + wait >= deadline.at):
                        raise
                    await anyio.sleep(wait)
                    attempt += 1
        state.scope = None
        if setup.cancel_called:
            raise Interrupted
        assert stream is not None

        if chunk is not None:
            first_chunk_at = time.perf_counter() - started
        # Each read is watched by the call's one ReadWatch, which carries the idle and total
        # deadlines and which stop() interrupts, so a stop means the same with or without timeouts.
        # Watching a read costs a few attribute stores; a cancel scope per read would cost several
        # microseconds, and in a real stream nearly every read waits.
        if state.stop_requested:  # (stopped during the input guards, before the setup scope)
            raise Interrupted
        read = stream.__anext__
        watch = state.watch = read_watch(idle=idle, total_at=deadline.loop_at())
        if watch is not None:
            current_task, now = watch.current_task, watch.now
        handler = state.handler
        while chunk is not None:
            assembler.add(chunk)
            if handler is not None and chunk.type == "text":
                handler.push(chunk.data, chunk.metadata or None)
            yield chunk
            if watch is None:
                # (a loop whose reads cannot be interrupted from outside: a scope per read)
                chunk = await _scoped_read(stream, state, idle, deadline, provider)
                continue
            # Mark the read for the watch (see ReadWatch); inline, as this runs once per chunk.
            watch.task = current_task()
            if idle is not None:
                watch.deadline = now() + idle
            watch.waiting = True
            try:
                chunk = await read()
            except StopAsyncIteration:
                chunk = None
            except BaseException as error:
                if not watch.settle(error):  # not the watch's doing: the read's own end
                    raise
            watch.waiting = False
            if watch.interrupted:
                # Whatever ended the read (the interrupt; or a chunk, or the end of the stream, that
                # came at that moment: dropped), it was interrupted.
                watch.settle(None)
                if state.stop_requested or not watch.expired:
                    raise Interrupted
                if watch.total_phase:
                    raise ProviderTimeout("total", timeout.total or 0.0, provider=provider)
                raise ProviderTimeout("idle", idle or 0.0, provider=provider)

        if not assembler.saw_finish:
            # The adapter contract promises a finish chunk; keep the promise to the caller regardless.
            finish = Chunk(
                type="finish", finish_reason="stop", metadata={"provider": provider, "synthesized": True}
            )
            assembler.add(finish)
            yield finish
        response = assembler.build(duration=time.perf_counter() - started, time_to_first_chunk=first_chunk_at)
        structure = request.expected
        if structure is not None and response.finish_reason != "tool_calls":
            # (a turn that ends calling the caller's own tools has no structured answer to parse)
            if request.reply_format == "toon":
                _parse_toon(response, structure, provider)
            else:
                _parse_structured(response, structure, provider)
        state.response = response
        if state.handler is not None:
            state.handler.finish()
    except BaseException as exc:
        stopped = isinstance(exc, Interrupted)
        cancelled = stopped or isinstance(exc, GeneratorExit | anyio.get_cancelled_exc_class())
        state.response = assembler.build(
            duration=time.perf_counter() - started,
            time_to_first_chunk=first_chunk_at,
            incomplete=True,
            finish_reason="cancelled" if cancelled else "error",
            error=None if cancelled else exc,
        )
        if not cancelled:
            state.error = exc
        if state.handler is not None:  # its consumer's loop ends however the call does
            if stopped:
                state.handler.finish()
            else:
                state.handler.fail(exc)
        if isinstance(exc, ProviderError) and exc.response is None:
            exc.response = state.response
        if not stopped:  # a stop ends the consumer's loop as the end of the stream does
            raise
    finally:
        state.scope = None
        if state.watch is not None:
            state.watch.close()
            state.watch = None
        await _close_quietly(stream)
        if holding_slot and slots is not None:
            slots.release()
        state.done.set()


def _parse_structured(response: Response, structure: Any, provider: str) -> None:
    """Set `response.parsed` from the reply's JSON; a reply that is not JSON fails the call."""
    try:
        document = json_document(_structured_text(response))
        if isinstance(structure, type) and issubclass(structure, BaseModel):
            # the whole text, strictly validated; a reply that does not validate fails the call
            response.parsed = structure.model_validate_json(document)
        elif list_item_type(structure) is not None:
            response.parsed = parse_list(structure, document)
        elif isinstance(structure, dict):
            response.parsed = json.loads(document)  # a JSON schema: the value, not validated here
    except (json.JSONDecodeError, PartialJSONError) as error:
        raise StructuredOutputError(
            f"the model's reply is not JSON, though response_format asked for JSON ({error}); "
            "the reply is in .response.text",
            provider=provider,
        ) from error


def _parse_toon(response: Response, structure: Any, provider: str) -> None:
    """Set `response.parsed` from a TOON reply (``reply_format="toon"``), strictly validated; a reply
    that is not TOON fails the call with `StructuredOutputError` (its `__cause__` says where)."""
    from lionflow.toon import ToonDecodeError, decode  # (a TOON reply is the only user)
    from lionflow.toon._prompt import unfenced

    try:
        value = decode(unfenced(response.text))
    except ToonDecodeError as error:
        raise StructuredOutputError(
            f"the model's reply is not TOON, though reply_format='toon' asked for it ({error}); "
            "the reply is in .response.text",
            provider=provider,
        ) from error
    if isinstance(structure, type) and issubclass(structure, BaseModel):
        response.parsed = structure.model_validate(value)
    elif list_item_type(structure) is not None:
        response.parsed = TypeAdapter(structure).validate_python(value)
    else:
        response.parsed = value  # a JSON schema: the value, not validated here


def _structured_text(response: Response) -> str:
    # structured output arrives as text, or as the arguments of a forced tool call (Anthropic)
    if response.text.strip() or not response.tool_calls:
        return response.text
    return response.tool_calls[0].raw_arguments
