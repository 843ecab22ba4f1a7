"""A real HTTP/1.1 server on 127.0.0.1 that streams scripted bodies, for running the official SDKs.

It runs its own event loop in a daemon thread, so the SDK under test talks to it over a real socket,
exactly as to a provider. Each reply is sent piece by piece (chunked transfer encoding) with optional
delays, and the server records every request and whether the client hung up before the body ended.

    with LoopbackServer() as server:
        server.add(Reply(pieces=[b"data: {...}\\n\\n", b"data: [DONE]\\n\\n"]))
        client = AsyncOpenAI(base_url=server.url + "/v1", api_key="test")
        ...
        assert server.requests[0].json["stream"] is True

Run as ``python -m tests.loopback BODY_FILE [--pieces N]`` it serves one body forever, from its own
process (the provider benchmark uses this), printing its URL on the first line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["LoopbackServer", "Received", "Reply", "anthropic_sse", "split", "sse"]


@dataclass
class Reply:
    """One scripted response: status, headers and a body sent as `pieces` with `delay` before each.

    `delay` is seconds before every piece, or a list with one entry per piece. A streaming reply
    (the default) uses chunked encoding; ``chunked=False`` sends the joined body with a length.
    ``abort=True`` drops the connection after the last piece, leaving the body unfinished.
    `head_delay` is seconds before the status line: a server that took the request and has not
    answered yet. `holds` pauses the body before given pieces until the test releases them.
    """

    pieces: Sequence[bytes] = ()
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "text/event-stream"})
    delay: float | Sequence[float] = 0.0
    chunked: bool = True
    abort: bool = False  # drop the connection after the pieces instead of ending the body
    head_delay: float = 0.0
    # (piece index, event): piece `index` waits until the test sets `event`, so that a test sees
    # the client in a known intermediate state (everything before it sent, nothing after).
    holds: Sequence[tuple[int, threading.Event]] = ()

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
        return cls(
            pieces=[json.dumps(payload).encode()],
            status=status,
            headers={"content-type": "application/json", **(headers or {})},
            chunked=False,
        )


@dataclass
class Received:
    """A request the server received, and what became of its response."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    disconnected: threading.Event = field(default_factory=threading.Event)
    completed: threading.Event = field(default_factory=threading.Event)
    pieces_sent: int = 0

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Handler = Reply | Callable[[Received], Reply]


class LoopbackServer:
    """Serves queued replies in order (see `add`), then `default` if set; 500 when none is left."""

    def __init__(self, default: Handler | None = None) -> None:
        self.default = default
        self.requests: list[Received] = []
        self._queue: deque[Handler] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, *replies: Handler) -> None:
        self._queue.extend(replies)

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> LoopbackServer:
        self._thread = threading.Thread(target=self._run, name="loopback-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("loopback server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    # -- one connection, one request -----------------------------------------------------------

    def _reply_for(self, received: Received) -> Reply:
        handler = self._queue.popleft() if self._queue else self.default
        if handler is None:
            return Reply.json(500, {"error": {"message": "loopback server: no reply queued"}})
        return handler(received) if callable(handler) else handler

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received: Received | None = None
        watcher: asyncio.Task[None] | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            received = Received(method=method, target=target, headers=headers, body=body)
            self.requests.append(received)
            reply = self._reply_for(received)
            watcher = asyncio.create_task(self._watch_hangup(reader, received))
            await self._send(writer, reply, received)
        except (ConnectionError, asyncio.IncompleteReadError):
            if received is not None:
                received.disconnected.set()
        finally:
            if watcher is not None:
                watcher.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _watch_hangup(reader: asyncio.StreamReader, received: Received) -> None:
        # The client sends nothing after its request; EOF means it closed the connection.
        with contextlib.suppress(ConnectionError):
            while await reader.read(1024):
                pass
        if not received.completed.is_set():
            received.disconnected.set()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: Reply, received: Received) -> None:
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 429: "Too Many Requests"}.get(
            reply.status, "Status"
        )
        if reply.head_delay:
            await asyncio.sleep(reply.head_delay)
            if received.disconnected.is_set():
                return
        head = [f"HTTP/1.1 {reply.status} {reason}", "connection: close"]
        head += [f"{name}: {value}" for name, value in reply.headers.items()]
        if not reply.chunked:
            body = b"".join(reply.pieces)
            head.append(f"content-length: {len(body)}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            received.completed.set()
            return
        head.append("transfer-encoding: chunked")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        delays = reply.delay if isinstance(reply.delay, Sequence) else [reply.delay] * len(reply.pieces)
        holds = dict(reply.holds)
        for index, (piece, delay) in enumerate(zip(reply.pieces, delays, strict=True)):
            hold = holds.get(index)
            while hold is not None and not hold.is_set() and not received.disconnected.is_set():  # noqa: ASYNC110 - a threading.Event, set from the test's thread
                await asyncio.sleep(0.01)
            if delay:
                await asyncio.sleep(delay)
            if received.disconnected.is_set():
                return
            if piece:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            received.pieces_sent += 1
        if reply.abort:  # a connection lost mid-stream, as a crashed proxy would leave it
            writer.transport.abort()
            return
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        received.completed.set()


# -- body builders ---------------------------------------------------------------------------------


def sse(events: Sequence[object], *, done: bool = True, separator: str = "\n\n") -> list[bytes]:
    """OpenAI-style SSE: one ``data: <json>`` event per item (str items are sent verbatim)."""
    pieces = [
        f"data: {item if isinstance(item, str) else json.dumps(item)}{separator}".encode() for item in events
    ]
    if done:
        pieces.append(f"data: [DONE]{separator}".encode())
    return pieces


def anthropic_sse(events: Sequence[dict[str, Any]]) -> list[bytes]:
    """Named SSE events (``event: <type>`` then ``data: <json>``), as Anthropic and Groq errors use."""
    return [f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode() for event in events]


def split(pieces: Sequence[bytes], size: int) -> list[bytes]:
    """Re-cut a body into `size`-byte pieces, splitting events and UTF-8 sequences anywhere."""
    body = b"".join(pieces)
    return [body[i : i + size] for i in range(0, len(body), size)]


def _main() -> None:
    parser = argparse.ArgumentParser(description="serve one streaming body on 127.0.0.1, forever")
    parser.add_argument("body", help="file with the exact response body")
    parser.add_argument("--pieces", type=int, default=0, help="send in this many pieces (0: one per event)")
    args = parser.parse_args()
    with open(args.body, "rb") as handle:
        body = handle.read()
    separator = b"\r\n\r\n" if b"\r\n\r\n" in body else b"\n\n"
    pieces = [event + separator for event in body.split(separator) if event]
    if args.pieces:
        size = max(1, len(body) // args.pieces)
        pieces = split(pieces, size)
    with LoopbackServer(default=Reply(pieces=pieces)) as server:
        print(server.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    _main()
