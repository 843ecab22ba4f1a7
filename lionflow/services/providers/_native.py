"""The native transport (``iModel(..., transport="native")``): the providers' wire formats over httpx,
with lionflow's own SSE decoder (`_sse`) and msgspec's JSON decoder, and no SDK in the path of a
delta.

A native adapter subclasses its SDK adapter, so that the key, the server, the options and the
request built from a `ModelRequest` are the SDK adapter's own, and overrides only what touches the
wire: `_make_client()` (a `NativeClient`), `_error()` and `open()`. What it produces must equal what
the SDK adapter produces, chunk for chunk and error for error (tests/providers/test_native_*.py
replay every recording and generated stream through both).

JSON: msgspec and orjson were both measured decoding provider events into dicts (the form
``raw_response`` keeps); msgspec was the faster, by about 15% on Chat Completions and Anthropic
events, and also encodes the request body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from lionflow.errors import MissingDependency, ProviderConnectionError, ProviderError, TimeoutPhase
from lionflow.services.providers._errors import sdk_timeout, status_error
from lionflow.services.providers._sse import SseDecoder, SseEvent

try:
    import httpx
    import msgspec
except ImportError as missing:  # pragma: no cover - the extra's absence is tested in a subprocess
    raise MissingDependency(
        "native", missing.name or "httpx", "native", what='transport="native"'
    ) from missing

from lionflow.services.providers._http11 import Http11Transport

try:
    _VERSION = version("lionflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    _VERSION = "0"

USER_AGENT = f"lionflow/{_VERSION} (native transport)"

decode = msgspec.json.Decoder().decode
"""bytes (an event's data, a body) to Python objects: dicts, lists, str, int, float, bool, None."""

encode = msgspec.json.encode

MALFORMED = (msgspec.DecodeError,)
"""What `decode` raises for data that is not JSON (mapped as a malformed response, as the SDKs'
``json.JSONDecodeError`` is)."""

TRANSPORT_ERRORS = (httpx.TransportError,)

# The SDK arguments that are not part of the JSON body.
_NOT_BODY = frozenset({"extra_body", "extra_headers", "extra_query", "timeout"})


def wire_body(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body an SDK sends for ``create(**arguments)``: the arguments, with ``extra_body``
    merged over them and the SDK's own options (headers, query, timeout) left out."""
    body = {key: value for key, value in arguments.items() if key not in _NOT_BODY}
    extra = arguments.get("extra_body")
    if extra:
        body.update(extra)
    return body


def request_timeout(value: Any, backstop: httpx.Timeout) -> httpx.Timeout:
    """The httpx timeout of one request: a ``timeout=`` the call gave (seconds, or an httpx-like
    timeout with connect/read/write/pool), else the client's backstop."""
    if value is None:
        return backstop
    if isinstance(value, int | float):
        return httpx.Timeout(float(value))
    fields = ("connect", "read", "write", "pool")
    if all(hasattr(value, name) for name in fields):
        return httpx.Timeout(**{name: getattr(value, name) for name in fields})
    return backstop


STREAMS_PER_LANE = 100
"""The streams httpcore runs at once on one HTTP/2 connection: its own SETTINGS value, whatever the
server allows; a pool queues the next one on that connection rather than opening another."""


class _Counted(httpx.AsyncByteStream):
    """A response body that gives its lane's slot back when closed; reads go to the body itself."""

    __slots__ = ("_body", "_lane")

    def __init__(self, body: httpx.AsyncByteStream, lane: _Lane) -> None:
        self._body = body
        self._lane: _Lane | None = lane

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._body.__aiter__()

    async def aclose(self) -> None:
        if self._lane is not None:
            self._lane.in_flight -= 1
            self._lane = None
        await self._body.aclose()


class _Lane:
    __slots__ = ("in_flight", "transport")

    def __init__(self, transport: httpx.AsyncHTTPTransport) -> None:
        self.transport = transport
        self.in_flight = 0


class StreamLanes(httpx.AsyncBaseTransport):
    """httpx's transport, as many of them as the streams in flight need: a request goes to the first
    pool with fewer than `STREAMS_PER_LANE` responses open, else to a new pool, so that over HTTP/2
    streams are not capped at one connection's 100 (over HTTP/1.1 the first pool takes them all:
    it has no connection limit)."""

    def __init__(self, *, http2: bool) -> None:
        self._http2 = http2
        self._ssl = httpx.create_ssl_context()  # one context (and CA file read) for every pool
        self._lanes: list[_Lane] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        lane = next((lane for lane in self._lanes if lane.in_flight < STREAMS_PER_LANE), None)
        if lane is None:
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
            lane = _Lane(httpx.AsyncHTTPTransport(verify=self._ssl, http2=self._http2, limits=limits))
            self._lanes.append(lane)
        lane.in_flight += 1
        try:
            response = await lane.transport.handle_async_request(request)
        except BaseException:
            lane.in_flight -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Counted(response.stream, lane)
        return response

    async def aclose(self) -> None:
        for lane in self._lanes:
            await lane.transport.aclose()


class NativeClient:
    """One pooled httpx client per model: HTTP/2 where the server offers it (over TLS), keep-alive
    connections reused across calls, no connection limit of its own (the iModel's `max_concurrent`
    is the limit), and the backstop timeouts the SDK clients get (see `backstop_timeout`)."""

    __slots__ = ("backstop", "base_url", "http")

    def __init__(self, base_url: str, headers: Mapping[str, str]) -> None:
        self.base_url = base_url.rstrip("/")
        self.backstop = httpx.Timeout(600.0, connect=60.0)
        try:
            import h2  # noqa: F401 - only whether it is there: httpx speaks HTTP/2 through it
        except ImportError:  # pragma: no cover - the extra installs it
            http2 = False
        else:
            http2 = True
        # https:// (HTTP/2 where the server offers it) through httpx's own transport; plain http://
        # through lionflow's HTTP/1.1 reader, which hands a body up a socket read at a time.
        secure = StreamLanes(http2=http2)
        self.http = httpx.AsyncClient(
            headers={"user-agent": USER_AGENT, "accept": "application/json", **headers},
            timeout=self.backstop,
            transport=Http11Transport(secure),
            follow_redirects=False,
        )

    async def send(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        timeouts: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST `body` as JSON to `path` and return the response once its headers arrived, its body
        still unread. An error status is returned too, for the adapter to map (`read_error`)."""
        request = self.http.build_request(
            "POST",
            self.base_url + path,
            content=encode(body),
            headers={"content-type": "application/json", **(headers or {})},
            params=params,
            timeout=request_timeout(timeouts, self.backstop),
        )
        return await self.http.send(request, stream=True)

    async def close(self) -> None:
        """Close the pooled connections (`SdkProvider.aclose()` calls this, as it does an SDK client's)."""
        await self.http.aclose()


async def read_error(response: httpx.Response) -> tuple[Any, str]:
    """An error response's body, decoded when it is JSON (else None), and its text, stripped; the
    response is closed."""
    try:
        raw = await response.aread()
    finally:
        await response.aclose()
    text = raw.decode("utf-8", "replace").strip()
    try:
        return decode(text), text
    except msgspec.DecodeError:
        return None, text


def error_message(body: Any, text: str, status: int, *, quotes_body: bool = True) -> str:
    """The message of an error body as the SDKs find it: the body's ``error.message`` (or
    ``message``). Without one, the anthropic and groq SDKs (`quotes_body`) say ``Error code: STATUS
    - BODY`` for a JSON body and the text itself for any other; the openai SDK says ``Error code:
    STATUS``. An empty body is ``Error code: STATUS`` everywhere."""
    if body is not None:
        error = body.get("error", body) if isinstance(body, Mapping) else None
        message = error.get("message") if isinstance(error, Mapping) else None
        if isinstance(message, str) and message:
            return message
    if not quotes_body or not text:
        return f"Error code: {status}"
    return text if body is None else f"Error code: {status} - {body}"


def status_failure(response: httpx.Response, message: str, provider: str) -> ProviderError:
    """The lionflow error of an HTTP error status, with the response's retry-after headers."""
    return status_error(response.status_code, message, provider=provider, headers=response.headers)


def transport_failure(error: BaseException, phase: TimeoutPhase, *, provider: str) -> ProviderError:
    """An httpx error as the SDK adapters report theirs: a timeout as the `ProviderTimeout` of
    `phase` (a connect timeout always ``connect``), anything else a lost connection."""
    if isinstance(error, httpx.TimeoutException):
        return sdk_timeout(error, phase, provider=provider)
    verb = "failed" if phase == "connect" else "was lost"
    return ProviderConnectionError(f"the connection to {provider} {verb}: {error!r}", provider=provider)


class EventReader:
    """The SSE events of a streamed response, a batch per network read (not an async generator per
    event: a delta costs a list item, not a suspension)."""

    __slots__ = ("_bytes", "_decoder", "_done", "_request", "_response", "flush_at_end")

    def __init__(self, response: httpx.Response, *, flush_at_end: bool = False) -> None:
        self._request = response.request
        self._response = response
        # Without a content encoding, the bytes are read from the transport's stream itself: the
        # layers httpx adds on the way (decoders, re-chunking, counting) cost more per read than
        # the event they carry. httpx's exception mapping is in that stream, so errors are the same.
        encoded = response.headers.get("content-encoding", "identity").lower() not in ("", "identity")
        stream: Any = response.stream
        # httpx's client wraps the transport's stream in one whose __aiter__ is an async generator;
        # lionflow's HTTP/1.1 body is an iterator object itself, read without that generator.
        inner: Any = getattr(stream, "_stream", None)
        self._bytes: AsyncIterator[bytes] = (
            response.aiter_bytes()
            if encoded or not hasattr(stream, "__aiter__")
            else inner
            if hasattr(inner, "__anext__")
            else stream.__aiter__()
        )
        self._decoder = SseDecoder(sdk_dispatch=True)  # every reader here is a Stainless SDK's twin
        self._done = False
        self.flush_at_end = flush_at_end

    async def batch(self) -> list[SseEvent] | None:
        """The events the next read completed (often none, sometimes many); None at the end."""
        if self._done:
            return None
        try:
            data = await self._bytes.__anext__()
        except httpx.RequestError as error:
            # Read from the transport's own stream, httpx's error names no request; it is named
            # here, as httpx's own reads do, for the timeout it was sent with (`sdk_timeout`).
            error.request = self._request
            raise
        except StopAsyncIteration:
            self._done = True
            rest = self._decoder.end()
            return rest if rest and self.flush_at_end else None
        return self._decoder.feed(data)

    async def aclose(self) -> None:
        """Close the reads (an async generator left unclosed warns when collected, under trio)
        and the response (its connection goes back to the pool, or is closed if unfinished)."""
        try:
            aclose = getattr(self._bytes, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            await self._response.aclose()
