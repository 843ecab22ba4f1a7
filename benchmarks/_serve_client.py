"""The load client of the serving load benchmark: N concurrent streamed chat completions, measured.

    .venv/bin/python benchmarks/_serve_client.py URL --requests 1000 --deltas 200 [--timeout 300]

Opens one connection per request, all at once, sends ``stream: true`` with
``stream_options.include_usage``, reads every server-sent event, and prints one JSON object: the
wall time, the most streams open at once, and per request the time to first byte (from the start
of the connection to the first byte of the response), the time to the first event, the longest gap
between two events, the text deltas and their text, whether ``data: [DONE]`` and the usage chunk
came, and the error if any. Plain HTTP/1.1 over anyio sockets, so that the client's own CPU stays
small next to the servers' it measures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import anyio
from _serve_upstream import expected_text
from anyio.abc import SocketStream


@dataclass
class Result:
    """What one request saw."""

    ttfb: float | None = None
    first_event: float | None = None
    max_gap: float = 0.0
    events: int = 0
    deltas: int = 0
    text_ok: bool = False
    done: bool = False
    usage: bool = False
    error: str | None = None

    def completed(self, deltas: int) -> bool:
        return self.error is None and self.done and self.deltas == deltas and self.text_ok


class Load:
    """The requests of one run and what they share: the target and the open-stream counter."""

    def __init__(self, url: str, *, model: str, deltas: int, timeout: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path.rstrip("/") + "/chat/completions"
        self.deltas = deltas
        self.expected = expected_text(deltas)
        self.timeout = timeout
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "Say tok two hundred times."}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        payload = json.dumps(body).encode()
        self.request = (
            f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\naccept: text/event-stream\r\n"
            f"authorization: Bearer unused\r\ncontent-length: {len(payload)}\r\n"
            "connection: close\r\n\r\n"
        ).encode() + payload
        self.open_now = 0
        self.open_peak = 0

    async def one(self, result: Result) -> None:
        started = time.perf_counter()
        try:
            with anyio.fail_after(self.timeout):
                await self._exchange(result, started)
        except TimeoutError:
            result.error = f"timed out after {self.timeout:.0f} s"
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            result.error = f"{type(exc).__name__}: {exc}"

    async def _exchange(self, result: Result, started: float) -> None:
        stream = await anyio.connect_tcp(self.host, self.port)
        self.open_now += 1
        self.open_peak = max(self.open_peak, self.open_now)
        try:
            async with stream:
                await stream.send(self.request)
                buffer = b""
                while b"\r\n\r\n" not in buffer:
                    buffer += await stream.receive()
                    if result.ttfb is None:
                        result.ttfb = time.perf_counter() - started
                head, _, rest = buffer.partition(b"\r\n\r\n")
                status_line, *lines = head.decode("latin-1").split("\r\n")
                status = int(status_line.split(" ", 2)[1])
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = _body(stream, rest, headers)
                if status != 200:
                    result.error = f"HTTP {status}: {b''.join([piece async for piece in body])[:300]!r}"
                    return
                await self._events(body, result, started)
        finally:
            self.open_now -= 1

    async def _events(self, body: AsyncIterator[bytes], result: Result, started: float) -> None:
        buffer = b""
        text: list[str] = []
        last = started
        async for piece in body:
            buffer += piece.replace(b"\r\n", b"\n")
            *blocks, buffer = buffer.split(b"\n\n")
            now = time.perf_counter()  # the events of one read arrived together
            for block in blocks:
                lines = block.split(b"\n")
                data = b"\n".join(line[5:].lstrip() for line in lines if line.startswith(b"data:"))
                if not data:
                    continue  # a comment (": ping") or an id-only block: not an event of the answer
                if result.first_event is None:
                    result.first_event = now - started
                else:
                    result.max_gap = max(result.max_gap, now - last)
                last = now
                result.events += 1
                if data == b"[DONE]":
                    result.done = True
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    result.error = f"error event: {json.dumps(chunk['error'])[:300]}"
                if chunk.get("usage"):
                    result.usage = True
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        result.deltas += 1
                        text.append(content)
        result.text_ok = "".join(text) == self.expected


async def _body(stream: SocketStream, rest: bytes, headers: dict[str, str]) -> AsyncIterator[bytes]:
    """The response body as it arrives (`rest`: what came with the head): chunked, sized, or up to
    the close. Decoded here rather than by a buffered reader's calls per chunk, which cost more
    CPU than the rest of the client."""
    if headers.get("transfer-encoding", "").lower() != "chunked":
        size = int(headers.get("content-length", "-1"))
        received = len(rest)
        if rest:
            yield rest
        while size < 0 or received < size:
            try:
                piece = await stream.receive()
            except anyio.EndOfStream:
                if size < 0:
                    return
                raise
            received += len(piece)
            yield piece
        return
    buffer, at = rest, 0
    while True:
        pieces: list[bytes] = []
        while True:
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                break
            size = int(buffer[at:line_end].split(b";")[0], 16)
            if size == 0:
                if pieces:
                    yield b"".join(pieces)
                return
            end = line_end + 2 + size
            if len(buffer) < end + 2:
                break
            pieces.append(buffer[line_end + 2 : end])
            at = end + 2
        if pieces:
            yield b"".join(pieces)
        buffer = buffer[at:] + await stream.receive()
        at = 0


async def main(url: str, *, model: str, requests: int, deltas: int, request_timeout: float) -> None:
    load = Load(url, model=model, deltas=deltas, timeout=request_timeout)
    results = [Result() for _ in range(requests)]
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for result in results:
            group.start_soon(load.one, result)
    wall = time.perf_counter() - started
    report = {
        "wall": wall,
        "open_peak": load.open_peak,
        "requests": [asdict(result) | {"completed": result.completed(deltas)} for result in results],
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="m")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--deltas", type=int, default=200, help="text deltas each stream should carry")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one request may take")
    args = parser.parse_args()
    anyio.run(
        lambda: main(
            args.url,
            model=args.model,
            requests=args.requests,
            deltas=args.deltas,
            request_timeout=args.timeout,
        )
    )
