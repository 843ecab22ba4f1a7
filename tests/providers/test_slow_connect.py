"""A provider slow to take a connection (a busy host, an overloaded event loop on our side) is not
failed by an SDK's own 5 s connect timer: the SDKs' timeouts are only backstops (a minute to connect,
ten to read), and lionflow's `Timeout` is the one that decides."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from lionflow import iModel
from tests.loopback import anthropic_sse, sse

pytestmark = pytest.mark.anyio


def _stream(provider: str) -> bytes:
    if provider == "anthropic":
        message: dict[str, Any] = {"id": "m", "type": "message", "role": "assistant", "model": "m"}
        message["content"] = []
        message |= {"stop_reason": None, "usage": {"input_tokens": 1, "output_tokens": 0}}
        text = {"type": "text_delta", "text": "late but here"}
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": message},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": text},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
            {"type": "message_stop"},
        ]
        return b"".join(anthropic_sse(events))
    delta = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    delta["choices"] = [{"index": 0, "delta": {"content": "late but here"}, "finish_reason": "stop"}]
    return b"".join(sse([json.dumps(delta)]))


def _answer(connection: socket.socket, stream: bytes) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        request += connection.recv(65536)
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += connection.recv(65536)
    connection.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(stream), stream)
    )
    connection.close()


@pytest.fixture(params=["openai", "anthropic"])  # (groq builds its client as openai does)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def slow_host(provider: str) -> Iterator[str]:
    """A server whose accept queue is full for 5.5 s: a new connection's SYN is dropped and retried
    by the kernel, so connecting takes about 7 s."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port))  # fills the accept queue

        def serve() -> None:
            stop.wait(5.5)
            listener.accept()[0].close()  # the filler
            listener.settimeout(30)
            with contextlib.suppress(OSError):  # (the test failed and went away)
                _answer(listener.accept()[0], _stream(provider))

        stop = threading.Event()
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{port}" + ("/v1" if provider == "openai" else "")
        finally:
            stop.set()
            filler.close()
            thread.join(40)


async def test_a_connect_that_takes_seconds_is_waited_for(provider: str, slow_host: str) -> None:
    # No retry: a second attempt would find the host free and hide the first one's failure.
    model = iModel(provider=provider, model="m", base_url=slow_host, api_key="k", max_retries=0)
    try:
        response = await model.invoke([{"role": "user", "content": "hi"}])
    finally:
        await model.aclose()
    assert response.text == "late but here"
