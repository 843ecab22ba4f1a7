"""A streamed HTTP response of server-sent events, as a plain ASGI app.

Not Starlette's `StreamingResponse` over an async generator: the events come from a producer task
(the model call) through a memory stream, so that the response can ping during silence and notice a
client that hung up without cancelling a read of the model halfway, and so that no generator yields
inside a task group. A client that goes away cancels the producer at once; the producer's own
``async with`` then closes the upstream stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.abc

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SSE_HEADERS: dict[str, str] = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",  # nginx and others would otherwise hold events back
    "connection": "keep-alive",
}
PING = b": ping\n\n"


class Failed:
    """What a producer sends when it failed before its first event: the response becomes an HTTP
    error (`status`, JSON `body`, `headers`) instead of a stream. If the response has already
    started (a ping went out while the model was silent), `event` is sent instead: the API's error
    event and end marker."""

    __slots__ = ("body", "event", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        event: bytes | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.event = b"data: " + body + b"\n\n" if event is None else event
        self.headers = dict(headers or {})


Producer = Callable[[anyio.abc.ObjectSendStream[bytes | Failed]], Awaitable[None]]
"""Sends encoded events (bytes, one or more whole events each), or one `Failed` first, then returns."""


class EventStream:
    """Runs `producer` and sends what it produces as the body of an event stream.

    The response starts with the first event (so that a failure before it is an HTTP status), or
    after `ping_interval` seconds of waiting for it; from then on a ``: ping`` comment goes out
    after every `ping_interval` seconds of silence.
    """

    def __init__(self, producer: Producer, *, ping_interval: float = 15.0) -> None:
        self._producer = producer
        self._ping_interval = ping_interval

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender, events = anyio.create_memory_object_stream[bytes | Failed](16)
        async with anyio.create_task_group() as group:

            async def produce() -> None:
                async with sender:
                    await self._producer(sender)

            async def watch() -> None:
                # The client sends nothing more; a disconnect means it went away.
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(produce)
            group.start_soon(watch)
            async with events:
                await self._relay(events, send)
            group.cancel_scope.cancel()

    async def _relay(self, events: anyio.abc.ObjectReceiveStream[bytes | Failed], send: Send) -> None:
        started = False
        while True:
            item: bytes | Failed | None = None
            with anyio.move_on_after(self._ping_interval):
                try:
                    item = await events.receive()
                except anyio.EndOfStream:
                    break
            if isinstance(item, Failed) and not started:
                headers = {"content-type": "application/json", **item.headers}
                await _start(send, item.status, headers)
                await send({"type": "http.response.body", "body": item.body, "more_body": False})
                return
            if not started:
                await _start(send, 200, SSE_HEADERS)
                started = True
            if isinstance(item, Failed):
                await send({"type": "http.response.body", "body": item.event, "more_body": True})
            elif isinstance(item, bytes):
                await send({"type": "http.response.body", "body": item, "more_body": True})
            elif item is None:
                await send({"type": "http.response.body", "body": PING, "more_body": True})
        if not started:
            await _start(send, 200, SSE_HEADERS)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _start(send: Send, status: int, headers: Mapping[str, str]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()],
        }
    )


class WholeAnswer:
    """Runs `work` (which returns the status, the JSON body and its headers) and sends its answer;
    a client that goes away first cancels it, so that the model call behind it is closed rather
    than run to its end for nobody."""

    def __init__(self, work: Callable[[], Awaitable[tuple[int, bytes, Mapping[str, str]]]]) -> None:
        self._work = work

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer: tuple[int, bytes, Mapping[str, str]] | None = None
        async with anyio.create_task_group() as group:

            async def run() -> None:
                nonlocal answer
                answer = await self._work()
                group.cancel_scope.cancel()

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(run)
            group.start_soon(watch)
        if answer is None:  # the client went away
            return
        status, body, headers = answer
        await _start(send, status, {"content-type": "application/json", **headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
