"""Server-sent events on the wire, and answers sent as plain ASGI apps.

The answers are not Starlette's `StreamingResponse` over an async generator: a streamed answer is
produced by a server task and followed (`lionflow.serve._hub`), and a whole one is cancelled when its
client goes away (`WholeAnswer`), so that no generator yields inside a task group and no model call
runs on for nobody.
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


async def start_response(send: Send, status: int, headers: Mapping[str, str]) -> None:
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
        await start_response(send, status, {"content-type": "application/json", **headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
