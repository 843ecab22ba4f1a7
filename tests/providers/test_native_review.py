"""A hostile review of the native transport's HTTP/1.1 reader (`_http11`): byte-exact servers on
127.0.0.1, each answer read through httpx's own stack and through lionflow's reader, which must
come out the same (status, body, or the class of the error)."""

from __future__ import annotations

import gc
import gzip
import json
import warnings
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import httpx
import pytest

from lionflow import iModel
from lionflow.services.providers._http11 import Http11Transport
from lionflow.services.providers._sse import SseDecoder
from tests.loopback import LoopbackServer, Reply, anthropic_sse, sse
from tests.providers import test_native_anthropic as anthropic_case
from tests.providers import test_native_gemini as gemini_case
from tests.providers import test_native_responses as responses_case
from tests.providers.native import both
from tests.providers.test_anthropic_messages import ending
from tests.providers.test_http11 import HEAD_CHUNKED, read_request, serving
from tests.providers.test_native_chat import COMPLETION, groq_model, openai_model
from tests.providers.test_openai_chat import text_stream
from tests.providers.test_openai_responses import text_body

pytestmark = pytest.mark.anyio


def _transports() -> dict[str, httpx.AsyncBaseTransport]:
    return {
        "httpx": httpx.AsyncHTTPTransport(),
        "native": Http11Transport(httpx.AsyncHTTPTransport()),
    }


async def _read(transport: httpx.AsyncBaseTransport, url: str) -> tuple[str, object]:
    """What a caller sees of one POST: (status, body) or the error's class."""
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as http:
        try:
            response = await http.post(url, content=b"{}")
        except httpx.HTTPError as error:
            return "error", type(error)
        return str(response.status_code), response.content


async def _both(wire: bytes) -> dict[str, tuple[str, object]]:
    async def handler(stream: anyio.abc.SocketStream, _: int) -> None:
        await read_request(stream)
        await stream.send(wire)

    seen = {}
    for name, transport in _transports().items():
        async with serving(handler) as served:
            with anyio.fail_after(10):
                seen[name] = await _read(transport, served.url + "/x")
    return seen


@pytest.mark.parametrize(
    "wire",
    [
        # an informational answer before the real one: skipped
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + HEAD_CHUNKED + b"2\r\nok\r\n0\r\n\r\n",
        # chunk sizes that are not hex digits: Python's int() would take them
        HEAD_CHUNKED + b"0x2\r\nok\r\n0\r\n\r\n",
        HEAD_CHUNKED + b"+2\r\nok\r\n0\r\n\r\n",
        HEAD_CHUNKED + b"-1\r\nok\r\n0\r\n\r\n",
        HEAD_CHUNKED + b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n",
        # a transfer coding other than chunked is not one httpx reads
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: abc\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
        # heads as h11 reads them: bare LF line ends, an obsolete line fold
        b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok",
        b"HTTP/1.1 200 OK\r\nx-long: a\r\n b\r\ncontent-length:\r\n\t2\r\n\r\nok",
        # what holds: leading zeros, upper-case hex, extensions
        HEAD_CHUNKED + b"0002\r\nok\r\n0A;x=1\r\n0123456789\r\n000\r\n\r\n",
    ],
    ids=[
        "100",
        "103",
        "0x",
        "plus",
        "minus",
        "underscore",
        "gzip-chunked",
        "bad-length",
        "two-lengths",
        "bare-lf",
        "folded",
        "lenient-ok",
    ],
)
async def test_odd_framing_reads_as_httpx_reads_it(wire: bytes) -> None:
    seen = await _both(wire)
    assert seen["native"] == seen["httpx"]


async def test_an_idle_connection_the_server_wrote_to_is_not_reused() -> None:
    """A server may answer an idle connection before closing it (a 408 on its idle timeout): those
    bytes are no answer to the next request, which goes on a new connection (as httpx's pool does)."""
    idle = anyio.Event()
    gone = anyio.Event()

    async def handler(stream: anyio.abc.SocketStream, number: int) -> None:
        await read_request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        if number == 1:
            await idle.wait()  # the connection went back to the pool
            await stream.send(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
            gone.set()
            await anyio.sleep(30)  # not closed yet

    for transport in _transports().values():
        idle, gone = anyio.Event(), anyio.Event()
        async with serving(handler) as served, httpx.AsyncClient(transport=transport) as http:
            with anyio.fail_after(10):
                assert (await http.post(served.url + "/1", content=b"{}")).content == b"ok"
                idle.set()
                await gone.wait()
                await anyio.sleep(0.05)  # the 408 crossed loopback
                second = await http.post(served.url + "/2", content=b"{}")
        assert (second.status_code, second.content) == (200, b"ok")
        assert len(served.accepted) == 2


# -- SSE framings the Stainless SDKs (openai, groq, anthropic) read their own way ------------------

# Each goes between the first event and the rest. The SDKs dispatch an event at a blank line when it
# has a name, a retry, or the stream ever set an id, with empty data (an error, for Chat Completions
# and Responses); the specification (and once the native decoder) dispatches only events with data.
ODD_FRAMINGS = {
    "named-without-data": b"event: ping\n\n",
    "id-without-data": b"id: 7\n\n",
    "retry-without-data": b"retry: 100\n\n",
    "signed-retry": b"retry: +100\n\n",
    "blank-line-after-an-id": b"id: 7\ndata: {}\n\n\n",
    "comment": b": keep-alive\n\n",
    "blank-lines": b"\n\n\r\n",
    "empty-name": b"event:\n\n",
}


def _chat_model(server: LoopbackServer, provider: str) -> dict[str, Any]:
    return openai_model(server) if provider == "openai" else groq_model(server)


@pytest.mark.parametrize("framing", list(ODD_FRAMINGS))
@pytest.mark.parametrize("provider", ["openai", "groq"])
async def test_chat_odd_framings_read_as_the_sdk_reads_them(
    server: LoopbackServer, provider: str, framing: str
) -> None:
    body = sse(text_stream("Hel", "lo"))
    body = [body[0], ODD_FRAMINGS[framing], *body[1:]]
    # the malformed event's message is the JSON decoder's own wording (as elsewhere for native)
    await both(
        server, lambda: [Reply(pieces=body)], model=_chat_model(server, provider), compare_messages=False
    )


@pytest.mark.parametrize("framing", list(ODD_FRAMINGS))
async def test_responses_odd_framings_read_as_the_sdk_reads_them(
    server: LoopbackServer, framing: str
) -> None:
    body = text_body("Hel", "lo")
    body = [body[0], ODD_FRAMINGS[framing], *body[1:]]
    await responses_case.same(server, Reply(pieces=body), compare_messages=False)


@pytest.mark.parametrize("framing", list(ODD_FRAMINGS))
async def test_anthropic_odd_framings_read_as_the_sdk_reads_them(
    server: LoopbackServer, framing: str
) -> None:
    events = anthropic_sse([*anthropic_case.text_events("ok"), *ending()])
    body = [events[0], ODD_FRAMINGS[framing], *events[1:]]
    await anthropic_case.same(server, Reply(pieces=body))


# -- cancellation, closing, keep-alive --------------------------------------------------------------


@pytest.mark.parametrize("where", ["head", "body"])
async def test_a_call_cancelled_while_it_waits_closes_its_connection_and_the_next_uses_a_new_one(
    where: str,
) -> None:
    async def handler(stream: anyio.abc.SocketStream, number: int) -> None:
        await read_request(stream)
        if number == 1:
            if where == "body":
                await stream.send(HEAD_CHUNKED + b"3\r\none\r\n")
            await read_request(stream)  # b"" once the client closes the connection
            return
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    transport = Http11Transport(httpx.AsyncHTTPTransport())
    async with serving(handler) as served, httpx.AsyncClient(transport=transport) as http:
        with anyio.fail_after(10):
            with anyio.move_on_after(0.2) as scope:
                async with http.stream("POST", served.url + "/1", content=b"{}") as response:
                    async for _ in response.aiter_raw():
                        pass
            assert scope.cancelled_caught
            await served.closed.wait()  # the server saw the close
            second = await http.post(served.url + "/2", content=b"{}")
    assert second.content == b"ok"
    assert len(served.accepted) == 2


async def test_an_http10_answer_does_not_keep_its_connection() -> None:
    async def handler(stream: anyio.abc.SocketStream, _: int) -> None:
        while await read_request(stream):
            await stream.send(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")

    for transport in _transports().values():
        async with serving(handler) as served, httpx.AsyncClient(transport=transport) as http:
            with anyio.fail_after(10):
                await http.post(served.url + "/1", content=b"{}")
                await http.post(served.url + "/2", content=b"{}")
        assert len(served.accepted) == 2


async def _read_into(http: httpx.AsyncClient, url: str, started: anyio.Event, seen: list[object]) -> None:
    """Read a streamed body to its end; the class of what failed it, into `seen`."""
    try:
        async with http.stream("POST", url, content=b"{}") as response:
            async for _ in response.aiter_raw():
                started.set()
    except Exception as error:
        seen.append(type(error))


async def test_closing_the_client_under_a_stream_in_flight_is_a_read_error() -> None:
    """aclose() while another task reads a body: httpx's error (lionflow maps it as a lost connection),
    never anyio's ClosedResourceError."""

    async def handler(stream: anyio.abc.SocketStream, _: int) -> None:
        await read_request(stream)
        await stream.send(HEAD_CHUNKED + b"3\r\none\r\n")
        await read_request(stream)

    for name, transport in _transports().items():
        seen: list[object] = []
        async with serving(handler) as served:
            http = httpx.AsyncClient(transport=transport)
            started = anyio.Event()

            with anyio.fail_after(10):
                async with anyio.create_task_group() as group:
                    group.start_soon(_read_into, http, served.url + "/1", started, seen)
                    await started.wait()
                    await anyio.sleep(0.05)  # the reader waits on the socket
                    await http.aclose()
        assert seen == [httpx.ReadError], name


@pytest.mark.parametrize("stream", [True, False])
async def test_a_gzip_content_encoding_on_plain_http_reads_the_same(
    server: LoopbackServer, stream: bool
) -> None:
    if stream:
        plain = b"".join(sse(text_stream("Hel", "lo")))
        headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
    else:
        plain = json.dumps(COMPLETION).encode()
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
    packed = gzip.compress(plain)
    pieces = [packed[start : start + 7] for start in range(0, len(packed), 7)]  # split anywhere
    model = openai_model(server, stream=stream)
    sdk, _ = await both(server, lambda: [Reply(pieces=pieces, headers=headers)], model=model)
    assert sdk.response is not None
    assert sdk.response["text"] == ("Hello" if stream else "Checking.")


async def test_a_request_the_server_took_and_never_answered_is_not_sent_again() -> None:
    """A pooled connection that looked open took the request, then closed without an answer: the
    server may have acted on it, so it is not re-sent behind the caller's back (httpx does not
    either: lionflow's retry policy decides)."""
    requests: list[bytes] = []

    async def handler(stream: anyio.abc.SocketStream, number: int) -> None:
        while head := await read_request(stream):
            requests.append(head.split(b"\r\n", 1)[0])
            if len(requests) == 2:
                return  # took the second request, crashed before answering
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    for name, transport in _transports().items():
        requests.clear()
        async with serving(handler) as served, httpx.AsyncClient(transport=transport) as http:
            with anyio.fail_after(10):
                await http.post(served.url + "/1", content=b"{}")
                with pytest.raises(httpx.RemoteProtocolError):
                    await http.post(served.url + "/2", content=b"{}")
        assert requests == [b"POST /1 HTTP/1.1", b"POST /2 HTTP/1.1"], name


async def test_a_line_of_megabytes_over_many_reads_is_not_copied_per_read() -> None:
    """A 16 MB event (a Responses ``response.completed`` repeats the whole output) arriving 4 KiB a
    read: each byte is joined once (as the SDKs' line decoder does), not once per read. The bound
    turns the quadratic copying (tens of seconds) into a failure, and is far above the linear cost."""
    line = b'data: "' + b"x" * (16 << 20) + b'"\n\n'
    decoder = SseDecoder(sdk_dispatch=True)
    events = []
    with anyio.fail_after(5):
        for start in range(0, len(line), 4096):
            events += decoder.feed(line[start : start + 4096])
            await anyio.lowlevel.checkpoint()
    assert [len(event.data) for event in events] == [(16 << 20) + 2]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "responses", "gemini"])
async def test_a_stream_left_early_leaves_no_generator_to_warn(server: LoopbackServer, provider: str) -> None:
    """Leaving a native stream after its first chunk closes everything it read with: nothing is
    left for the garbage collector to warn about (trio warns of an unclosed async generator)."""
    models = {
        "openai": (openai_model(server), sse(text_stream("a", "b", "c"))),
        "anthropic": (
            anthropic_case.model(server),
            anthropic_sse([*anthropic_case.text_events("a", "b"), *ending()]),
        ),
        "responses": (responses_case.model(server), text_body("a", "b", "c")),
        "gemini": (gemini_case.model_of(server), gemini_case.SHAPES["text"]),
    }
    model, body = models[provider]
    server.add(Reply(pieces=body, delay=[0.0] * 2 + [2.0] * (len(body) - 2)))
    lion = iModel(**(model | {"transport": "native"}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with anyio.fail_after(10):
            async for _ in lion.invoke(messages="hi"):
                break
            await lion.aclose()
        gc.collect()
        await anyio.lowlevel.checkpoint()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
