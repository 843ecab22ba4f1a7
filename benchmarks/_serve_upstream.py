"""The upstream of the serving load benchmark: a cheap OpenAI Chat Completions server on loopback.

    .venv/bin/python benchmarks/_serve_upstream.py --deltas 200 [--interval 0]

Every ``stream: true`` request to ``POST .../chat/completions`` gets the same pre-encoded stream:
a role chunk, N ``chat.completion.chunk`` text deltas (one HTTP chunk each, so the server behind
the benchmark reads a real stream, not one blob), a finish chunk, the usage chunk when
``stream_options.include_usage`` asks for it, and ``data: [DONE]``. Other requests get a small
non-streamed completion. ``GET /stats`` answers the counters as JSON: streams started, finished,
and closed early by the client (a write that failed before the end). The first line printed is
the URL. Its CPU is not what the benchmark measures, so it does as little as it can per request.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream


def delta_text(index: int) -> str:
    """The text of the delta at `index`: small, as the relay's work per delta is what is measured,
    and never the same twice in a row (LiteLLM ends a stream that repeats one chunk 100 times)."""
    return f"t{index} "


def expected_text(deltas: int) -> str:
    """The whole answer a client should put together from a stream of `deltas` deltas."""
    return "".join(delta_text(index) for index in range(deltas))


_HEAD_LIMIT = 65_536


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def stream_frames(deltas: int, *, usage: bool) -> list[bytes]:
    """The whole reply as HTTP chunk frames, one per event (the usage chunk only when asked)."""
    base = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _event(base | {"choices": [choice]})

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": delta_text(index)}) for index in range(deltas)]
    events.append(chunk({}, "stop"))
    if usage:
        counts = {"prompt_tokens": 5, "completion_tokens": deltas, "total_tokens": deltas + 5}
        events.append(_event(base | {"choices": [], "usage": counts}))
    events.append(b"data: [DONE]\n\n")
    return [_frame(event) for event in events] + [b"0\r\n\r\n"]


def _completion(deltas: int) -> bytes:
    message = {"role": "assistant", "content": expected_text(deltas)}
    body = {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": deltas, "total_tokens": deltas + 5},
    }
    return json.dumps(body).encode()


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


class Upstream:
    """The server: its pre-encoded replies and its counters."""

    def __init__(self, deltas: int, *, interval: float) -> None:
        self.with_usage = stream_frames(deltas, usage=True)
        self.without_usage = stream_frames(deltas, usage=False)
        self.completion = _response("200 OK", _completion(deltas))
        self.interval = interval
        self.stats = {"streams": 0, "finished": 0, "closed_early": 0, "other": 0}

    async def handle(self, stream: SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        try:
            async with stream:
                while await self._one_request(reader, stream):
                    pass
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
            pass  # the client went away between requests: nothing to record

    async def _one_request(self, reader: BufferedByteReceiveStream, stream: SocketStream) -> bool:
        head = await reader.receive_until(b"\r\n\r\n", _HEAD_LIMIT)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked_body(reader)
        else:
            body = await reader.receive_exactly(int(headers.get("content-length", "0") or 0))
        if method == "GET" and target == "/stats":
            await stream.send(_response("200 OK", json.dumps(self.stats).encode()))
        elif method == "POST" and target.split("?")[0].endswith("/chat/completions"):
            request = json.loads(body or b"{}")
            if request.get("stream"):
                usage = bool((request.get("stream_options") or {}).get("include_usage"))
                await self._stream(stream, self.with_usage if usage else self.without_usage)
            else:
                self.stats["other"] += 1
                await stream.send(self.completion)
        else:
            self.stats["other"] += 1
            await stream.send(_response("404 Not Found", b'{"error":{"message":"not found"}}'))
        return headers.get("connection", "").lower() != "close"

    async def _chunked_body(self, reader: BufferedByteReceiveStream) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.receive_until(b"\r\n", 1024)).split(b";")[0], 16)
            if size == 0:
                await reader.receive_until(b"\r\n", 1024)
                return b"".join(parts)
            parts.append(await reader.receive_exactly(size))
            await reader.receive_exactly(2)

    async def _stream(self, stream: SocketStream, frames: list[bytes]) -> None:
        self.stats["streams"] += 1
        try:
            await stream.send(_STREAM_HEAD)
            for frame in frames:
                if self.interval:
                    await anyio.sleep(self.interval)
                await stream.send(frame)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.stats["closed_early"] += 1
            raise
        self.stats["finished"] += 1


async def main(deltas: int, interval: float) -> None:
    upstream = Upstream(deltas, interval=interval)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0, backlog=4096)
    port = listener.extra(SocketAttribute.local_port)
    print(f"http://127.0.0.1:{port}", flush=True)
    await listener.serve(upstream.handle)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deltas", type=int, default=200, help="text deltas per stream")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds before each event")
    args = parser.parse_args()
    anyio.run(main, args.deltas, args.interval)
