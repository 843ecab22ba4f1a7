"""lionflow's HTTP/1.1 reader for plain-HTTP origins (`_http11.Http11Transport`), driven through a
real httpx client against byte-exact servers on 127.0.0.1: framing (chunked, length, close), bodies
split anywhere, keep-alive reuse, a stale idle connection, malformed and cut bodies, timeouts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import anyio.lowlevel
import httpx
import pytest

from lionflow.services.providers._http11 import Http11Transport

pytestmark = pytest.mark.anyio

Handler = Callable[[anyio.abc.SocketStream, int], Awaitable[None]]


@dataclass
class Served:
    url: str
    accepted: list[int] = field(default_factory=list)  # one entry per connection
    closed: anyio.Event = field(default_factory=anyio.Event)  # the client closed a connection


async def read_request(stream: anyio.abc.SocketStream) -> bytes:
    """One request's head and body (Content-Length), as the client sent them; b"" at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            data += await stream.receive()
        except anyio.EndOfStream:
            return b""
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    while len(body) < length:
        body += await stream.receive()
    return head


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Served]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    served = Served(url=f"http://127.0.0.1:{port}")

    async def connection(stream: anyio.abc.SocketStream) -> None:
        served.accepted.append(port)
        async with stream:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.EndOfStream, OSError):
                await handler(stream, len(served.accepted))
        served.closed.set()

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, connection)
        try:
            yield served
        finally:
            group.cancel_scope.cancel()


def client(**options: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=Http11Transport(httpx.AsyncHTTPTransport()), **options)  # type: ignore[arg-type]


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


HEAD_CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
EVENTS = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
async def test_a_chunked_body_split_anywhere_reads_whole(size: int) -> None:
    wire = HEAD_CHUNKED + chunked(*EVENTS)

    async def handler(stream: anyio.abc.SocketStream, _: int) -> None:
        await read_request(stream)
        for start in range(0, len(wire), size):
            await stream.send(wire[start : start + size])
            await anyio.lowlevel.checkpoint()

    async with (
        serving(handler) as served,
        client() as http,
        http.stream("POST", served.url + "/v1/x", content=b"{}") as response,
    ):
        body = b"".join([part async for part in response.aiter_raw()])
    assert body == b"".join(EVENTS)
    assert response.http_version == "HTTP/1.1"


async def test_chunk_extensions_and_trailers_are_read_past() -> None:
    wire = HEAD_CHUNKED + b"4;name=value\r\nabcd\r\n2\r\nef\r\n0\r\nx-trailer: 1\r\n\r\n"

    async def handler(stream: anyio.abc.SocketStream, _: int) -> None:
        await read_request(stream)
        await stream.send(wire)
        await read_request(stream)  # keep-alive: the next request comes on this connection
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    async with serving(handler) as served, client() as http:
        first = await http.post(served.url + "/a", content=b"{}")
        second = await http.post(served.url + "/b", content=b"{}")
    assert first.content == b"abcdef"
    assert second.content == b"ok"
    assert len(served.accepted) == 1


async def test_a_length_body_keeps_the_connection_and_a_close_body_does_not() -> None:
    async def handler(stream: anyio.abc.SocketStream, number: int) -> None:
        while await read_request(stream):
            if number == 1:
                await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
            else:
                await stream.send(
                    b"HTTP/1.1 200 OK\r\n\r\nuntil the end"
                )  # no length: ends with the connection
                return

    async with serving(handler) as served, client() as http:
        assert (await http.get(served.url + "/1")).content == b"hello"
        assert (await http.get(served.url + "/2")).content == b"hello"
        assert len(served.accepted) == 1
    async with serving(lambda stream, _: handler(stream, 2)) as served, client() as http:
        assert (await http.get(served.url + "/1")).content == b"until the end"
        assert (await http.get(served.url + "/2")).content == b"until the end"
        assert len(served.accepted) == 2


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async def handler(stream: anyio.abc.SocketStream, _: int) -> None:
        await read_request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        # then the server closes it (an idle timeout of its own), without saying so

    async with serving(handler) as served, client() as http:
        assert (await http.get(served.url + "/1")).content == b"ok"
        with anyio.fail_after(5):
            await served.closed.wait()
        assert (await http.get(served.url + "/2")).content == b"ok"
    assert len(served.accepted) == 2


async def test_connection_close_is_honoured() -> None:
    async def handler(stream: anyio.abc.SocketStream, _: int) -> None:
        await read_request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
        await read_request(stream)

    async with serving(handler) as served, client() as http:
        await http.get(served.url + "/1")
        await http.get(served.url + "/2")
    assert len(served.accepted) == 2


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (HEAD_CHUNKED + b"5\r\nab", "incomplete chunked read"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", "received 3 bytes, expected 10"),
        (HEAD_CHUNKED + b"zz\r\nab\r\n", "malformed chunked encoding"),
        (HEAD_CHUNKED + b"2\r\nabXY", "malformed chunked encoding"),
        (b"SPDY/3 200 OK\r\n\r\n", "not an HTTP/1.1 status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
    ],
)
async def test_a_broken_body_is_a_protocol_error(wire: bytes, message: str) -> None:
    async def handler(stream: anyio.abc.SocketStream, _: int) -> None:
        await read_request(stream)
        await stream.send(wire)

    async with serving(handler) as served, client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match=message) as raised:
            async with http.stream("GET", served.url + "/x") as response:
                [part async for part in response.aiter_raw()]
    assert raised.value.request.url.path == "/x"


async def test_a_server_that_closes_before_answering_is_a_protocol_error() -> None:
    async def handler(stream: anyio.abc.SocketStream, _: int) -> None:
        await read_request(stream)

    async with serving(handler) as served, client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="disconnected without sending a response"):
            await http.get(served.url + "/x")


async def test_read_and_connect_timeouts_are_httpxs_with_the_request() -> None:
    async def handler(stream: anyio.abc.SocketStream, _: int) -> None:
        await read_request(stream)
        await stream.send(HEAD_CHUNKED + b"2\r\nok\r\n")
        await anyio.sleep(30)

    async with serving(handler) as served, client(timeout=httpx.Timeout(5.0, read=0.2)) as http:
        with pytest.raises(httpx.ReadTimeout) as raised:
            async with http.stream("GET", served.url + "/x") as response:
                [part async for part in response.aiter_raw()]
    assert raised.value.request.extensions["timeout"]["read"] == 0.2


async def test_a_refused_connection_is_a_connect_error() -> None:
    with anyio.fail_after(10):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()
        async with client() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/")


async def test_no_body_for_head_and_204() -> None:
    async def handler(stream: anyio.abc.SocketStream, _: int) -> None:
        while await read_request(stream):
            await stream.send(b"HTTP/1.1 204 No Content\r\n\r\n")

    async with serving(handler) as served, client() as http:
        assert (await http.delete(served.url + "/1")).content == b""
        assert (await http.head(served.url + "/2")).status_code == 204
    assert len(served.accepted) == 1


async def test_https_goes_to_the_fallback_transport() -> None:
    seen: list[str] = []

    class Recording(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url))
            return httpx.Response(200, content=b"from the fallback")

    async with httpx.AsyncClient(transport=Http11Transport(Recording())) as http:
        response = await http.get("https://example.invalid/x")
    assert response.content == b"from the fallback"
    assert seen == ["https://example.invalid/x"]


async def test_closing_the_client_closes_its_idle_connections() -> None:
    async def handler(stream: anyio.abc.SocketStream, _: int) -> None:
        await read_request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await read_request(stream)  # EOF when the client closes it

    async with serving(handler) as served:
        http = client()
        await http.get(served.url + "/1")
        assert not served.closed.is_set()
        await http.aclose()
        with anyio.fail_after(5):
            await served.closed.wait()


async def test_leaving_a_stream_early_closes_its_connection() -> None:
    async def handler(stream: anyio.abc.SocketStream, _: int) -> None:
        await read_request(stream)
        await stream.send(HEAD_CHUNKED + b"3\r\none\r\n")
        await read_request(stream)  # b"" once the client closes the connection

    async with serving(handler) as served, client() as http:
        async with http.stream("GET", served.url + "/x") as response:
            async for _ in response.aiter_raw():
                break
        with anyio.fail_after(5):
            await served.closed.wait()
