"""Streams that outlive their request: resumable with ``Last-Event-ID``, and followed live.

A streamed answer runs as a task of the server (not of the request that asked for it) and writes
its events to a `StreamLog`; the request, and any later one that resumes it, follows the log. Every
event gets an ``id:`` (its position in the stream, from 1), so a client that lost its connection asks
for what came after the last id it saw and gets exactly that: replayed from the log, then live.

When the last follower goes away before the answer is complete, the answer is cancelled (its
provider stream closed) at once, or after `resume_grace` seconds if no one has come back to follow
it by then. A finished log is kept for `ttl` seconds, then dropped.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel

from lionflow.serve._errors import APIError, from_exception
from lionflow.serve._saver import Saver
from lionflow.serve._sse import PING, SSE_HEADERS, Failed, Receive, Scope, Send, start_response
from lionflow.serve._stream_log import StreamLog
from lionflow.services.call import ModelCall
from lionflow.services.chunk import Chunk
from lionflow.services.response import Response
from lionflow.session.stores.base import SessionStore

_log = logging.getLogger("lionflow.serve")
_SLICE = 0.002  # seconds a stream's relay runs at most before the others run


class EventSink(Protocol):
    """Where a producer sends its events: whole SSE events (bytes, one or more), or one `Failed`."""

    async def send(self, item: bytes | Failed) -> None: ...


Producer = Callable[[EventSink], Awaitable[None]]
Ended = Callable[[Response | None], Awaitable[None]]
"""What to do with a call's Response when it ends however it ends (record the turn)."""


class Encoder(Protocol):
    """One API's events for one answer: a chunk's (maybe none), the end's, and an error's."""

    def encode(self, chunk: Chunk) -> bytes: ...

    def end(self) -> bytes: ...

    def error(self, failure: APIError) -> bytes: ...


async def relay(
    call: Callable[[], ModelCall[Any]],
    encoder: Encoder,
    out: EventSink,
    *,
    error_body: Callable[[APIError], bytes] = APIError.body_bytes,
    ended: Ended | None = None,
) -> None:
    """Stream `call()` (a model call, opened here) to `out` as `encoder`'s events: the producer of
    every API's stream.

    A failure before the first event is a `Failed` (an HTTP status whose body is `error_body`);
    after it, the API's error event. The call is closed however this ends: cancelled when the
    client went away, its provider stream too. `ended` then gets the call's Response (partial,
    ``incomplete``, when it did not complete; None when the call never began), also on a
    cancellation: the turn is recorded however it ends.
    """
    sent = False
    streaming: ModelCall[Any] | None = None
    tail: bytes | Failed | None = None  # the end's events, or the failure's
    stopped: APIError | None = None  # an output guard's stop
    try:
        try:
            async with call() as streaming:
                ran_since = time.perf_counter()
                async for chunk in streaming:
                    if chunk.type == "finish" and chunk.metadata.get("guard"):
                        stopped = _guard_stop(chunk.metadata["guard"])  # (the call ends with it)
                        continue
                    event = encoder.encode(chunk)
                    if event:
                        await out.send(event)
                        sent = True
                    # An upstream that has sent much at once is read without a pause: let the
                    # server's other streams (and connects, whose timers run) have their turn.
                    if time.perf_counter() - ran_since > _SLICE:
                        await anyio.lowlevel.checkpoint()
                        ran_since = time.perf_counter()
            if stopped is not None:
                raise stopped
            tail = encoder.end()
        except Exception as exc:  # (a cancellation is not an Exception: it passes)
            failure = from_exception(exc)
            event = encoder.error(failure)
            # Before the first event, an HTTP status (the error event if a ping started the response).
            tail = (
                event if sent else Failed(failure.status, error_body(failure), failure.headers, event=event)
            )
    finally:
        # Recorded before the client sees the end: once it has, the answer can be looked up.
        if ended is not None:
            with anyio.CancelScope(shield=True):
                await ended(None if streaming is None else streaming.response)
    await out.send(tail)


def _guard_stop(guard: dict[str, Any]) -> APIError:
    """The error a stream stopped by an output guard ends with (the API's error event, or before
    its first event an HTTP 400): type ``guardrails_violation``, naming the guard."""
    message = f"guard {guard.get('name')!r} stopped the answer: {guard.get('reason') or 'a check failed'}"
    return APIError(400, message, kind="guardrails_violation", code="guardrails_violation")


async def called(call: ModelCall[Any], ended: Ended | None) -> Response:
    """The Response of `call` (a whole answer); `ended` gets it however the call ends (partial,
    ``incomplete``, when the client went away first)."""
    try:
        return await call
    finally:
        if ended is not None:
            with anyio.CancelScope(shield=True):
                await call.aclose()  # (left early, the call builds its partial Response on closing)
                await ended(call.response)


class Hub:
    """The server's live and recent streams, and the task group their producers run in. With a
    `store`, every stream's events are also written there (see `Saver`), so that a stream outlives
    this process's memory of it: after the server restarts it can still be replayed."""

    def __init__(
        self,
        *,
        resume_grace: float,
        ttl: float,
        ping_interval: float,
        store: SessionStore | None = None,
        save_interval: float = 0.05,
    ) -> None:
        self.resume_grace = resume_grace
        self.ttl = ttl
        self.ping_interval = ping_interval
        self.logs: dict[str, StreamLog] = {}
        # The ended logs in the order they ended (so of their expiry): a sweep looks only at those
        # that expired, not at every log, since each new stream sweeps.
        self._ended: deque[StreamLog] = deque()
        self.saver = Saver(store, save_interval) if store is not None else None
        self._group: anyio.abc.TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """For the app's lifespan: the producers run inside; leaving cancels those still running
        (and writes what they sent). Expired logs are dropped as time passes, also on a server that
        has gone quiet."""
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                group.start_soon(self._sweeping)
                if self.saver is not None:
                    group.start_soon(self.saver.saving)
                try:
                    yield
                finally:
                    self._group = None
                    group.cancel_scope.cancel()
        finally:
            if self.saver is not None:
                with anyio.CancelScope(shield=True):
                    await self.saver.save()

    async def _sweeping(self) -> None:
        while True:
            await anyio.sleep(min(max(self.ttl, 0.05), 60.0))
            self._sweep()
            if self.saver is not None:
                await self.saver.drop(older_than=self.ttl, live=list(self.logs.values()))

    def _expired(self, log: StreamLog) -> bool:
        return anyio.current_time() - log.ended_at > self.ttl

    def _sweep(self) -> None:
        ended = self._ended
        while ended and self._expired(ended[0]):
            log = ended.popleft()
            if self.logs.get(log.id) is log:  # (`find` may have dropped it already)
                del self.logs[log.id]

    async def find(self, stream_id: str) -> StreamLog | None:
        """The log of `stream_id`, unless there is none or it expired; from the store when this
        process no longer holds it (replayed as far as it was stored, then ended)."""
        log = self.logs.get(stream_id)
        if log is not None and self._expired(log):
            del self.logs[stream_id]
            return None
        if log is None and self.saver is not None:
            return await self.saver.load(stream_id)
        return log

    def start(
        self, stream_id: str, producer: Producer, *, background: bool = False, followed: bool = True
    ) -> StreamLog:
        """Run `producer` as a server task writing to a new log, which the caller then follows
        (unless not `followed`). A `background` log runs on when no one follows it."""
        if self._group is None:
            raise RuntimeError("the server's lifespan is not running: serve the app with lifespan on")
        self._sweep()
        changed = self.saver.changed if self.saver is not None else None
        log = self.logs[stream_id] = StreamLog(stream_id, changed=changed)
        log.background = background
        log.followers = 1 if followed else 0  # the request that asked for it follows it next
        self._group.start_soon(self._produce, log, producer)
        return log

    async def _produce(self, log: StreamLog, producer: Producer) -> None:
        with log.scope:
            try:
                await producer(log)
            except Exception:  # a bug of a producer ends its stream, not the server's task group
                _log.exception("stream %s failed", log.id)
            finally:
                log.end()
                self._ended.append(log)

    def left(self, log: StreamLog) -> None:
        """A follower of `log` went away (or finished)."""
        log.followers -= 1
        if log.followers > 0 or log.done or log.background:
            return
        log.leaves += 1
        if self.resume_grace <= 0 or self._group is None:
            log.scope.cancel()
        else:
            self._group.start_soon(self._cancel_unless_followed, log, log.leaves)

    async def _cancel_unless_followed(self, log: StreamLog, leave: int) -> None:
        await anyio.sleep(self.resume_grace)
        # Only for this leave: a follower that came back and left again started a grace of its own.
        if log.followers == 0 and log.leaves == leave:
            log.scope.cancel()

    async def stop(self, stream_id: str, *, wait: float = 10.0) -> bool | None:
        """Cancel the running stream `stream_id` (its model call and provider stream) now, whatever
        the grace, and wait up to `wait` seconds for its end to be recorded: True when it was
        running, False when it had already ended, None when this process holds no such stream."""
        log = self.logs.get(stream_id)
        if log is None:
            return None
        if log.done:
            return False
        log.scope.cancel()
        with anyio.move_on_after(wait):  # the turn is recorded before the log ends
            while not log.done:
                await log.changed()
        return True

    def follow(self, log: StreamLog, *, after: int = 0, joined: bool = True) -> Follow:
        """The response that sends `log`'s events after number `after`, then the live ones.
        `joined` says the follower was already counted (the request that started it)."""
        if not joined:
            log.followers += 1
        return Follow(self, log, after)


class Follow:
    """An ASGI response following one `StreamLog` (see `Hub.follow`)."""

    def __init__(self, hub: Hub, log: StreamLog, after: int) -> None:
        self._hub = hub
        self._log = log
        self._position = max(after, 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    # The client sends nothing more; a disconnect means it went away.
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                await self._relay(send)
                group.cancel_scope.cancel()
        finally:
            self._hub.left(self._log)

    async def _relay(self, send: Send) -> None:
        log = self._log
        started = False
        while True:
            if log.failed is not None:  # (only ever before the first event)
                failed = log.failed
                if not started:
                    headers = {"content-type": "application/json", **failed.headers}
                    await start_response(send, failed.status, headers)
                    await send({"type": "http.response.body", "body": failed.body, "more_body": False})
                    return
                # A ping had started the response: the error goes as the API's error event.
                await send({"type": "http.response.body", "body": failed.event, "more_body": True})
                break
            if len(log.events) > self._position:
                if not started:
                    await start_response(send, 200, SSE_HEADERS)
                    started = True
                body = b"".join(log.events[self._position :])
                self._position = len(log.events)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                continue
            if log.done:
                break
            with anyio.move_on_after(self._hub.ping_interval) as waited:
                await log.changed()
            if waited.cancelled_caught:
                if not started:
                    await start_response(send, 200, SSE_HEADERS)
                    started = True
                await send({"type": "http.response.body", "body": PING, "more_body": True})
        if not started:
            await start_response(send, 200, SSE_HEADERS)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
