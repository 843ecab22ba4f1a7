"""HTTP/1.1 for the native transport's plain-HTTP origins: an httpx transport that reads a response
body a whole socket read at a time.

httpx's own stack (httpcore over h11) hands a streamed body up one chunked-encoding chunk at a time,
through several layers of generators. A provider flushes every SSE event as a chunk of its own, so
that cost is paid per delta, and it was most of the native transport's CPU per delta. Here a socket
read of up to 64 KiB is de-chunked in one pass (`bytes.find`) and handed up whole, however many
events it holds.

`Http11Transport` serves ``http://`` URLs itself and passes every other one (``https://``, where
HTTP/2 is negotiated) to httpx's own transport. It keeps idle connections per origin for reuse,
applies httpx's four timeouts (connect, write, read per socket read, pool is moot: no limit), and
raises httpx's own exceptions with the request attached, so that what callers see is what httpx
would raise. An idle connection with something to read (the server closed it, or wrote to it) is
not reused, and a reused one that refuses the request's bytes is replaced; one that took the
request is never sent it again (the server may have acted on it): as with httpx, the caller's
retry policy decides.
"""

from __future__ import annotations

import re
import select
from typing import Any

import anyio
import anyio.abc
import httpx
import sniffio

_READ = 65536
_MAX_HEAD = 65536
_NO_BODY_STATUSES = frozenset({204, 304})
_HEX = frozenset(b"0123456789abcdefABCDEF")
_HEAD_END = re.compile(rb"\n\r?\n")  # as h11 finds it: lines may end in a bare LF


class _Connection:
    """One TCP connection and the bytes read past the last response."""

    __slots__ = ("buffer", "stream")

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()


def _seconds(timeouts: Any, kind: str) -> float | None:
    value = timeouts.get(kind) if isinstance(timeouts, dict) else None
    return float(value) if isinstance(value, int | float) else None


class Http11Transport(httpx.AsyncBaseTransport):
    """See the module's docstring. `fallback` serves every URL that is not ``http://``."""

    def __init__(self, fallback: httpx.AsyncBaseTransport, *, max_idle: int = 100) -> None:
        self._fallback = fallback
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._max_idle = max_idle
        self._idle_count = 0
        self._open: set[_Connection] = set()  # every connection, idle or busy: closed by aclose()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            return await self._fallback.handle_async_request(request)
        if self._closed:
            raise RuntimeError("the transport was closed")
        timeouts = request.extensions.get("timeout")
        head = self._request_head(request) + await request.aread()
        origin = (request.url.host, request.url.port or 80)
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if _readable(connection):
                # While idle, an open connection has nothing to say: bytes there (a 408 before the
                # server's idle close) are no answer to this request, and EOF means it is gone.
                await self._discard(connection)
                continue
            try:
                return await self._exchange(connection, request, head, timeouts, reused=True)
            except _Stale:
                await self._discard(connection)
        connection = await self._connect(request, origin, timeouts)
        return await self._exchange(connection, request, head, timeouts, reused=False)

    @staticmethod
    def _request_head(request: httpx.Request) -> bytes:
        target = request.url.raw_path
        lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), target)]
        lines += [name + b": " + value for name, value in request.headers.raw]
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def _connect(self, request: httpx.Request, origin: tuple[str, int], timeouts: Any) -> _Connection:
        limit = _seconds(timeouts, "connect")
        try:
            with anyio.fail_after(limit):
                stream = await anyio.connect_tcp(origin[0], origin[1])
        except TimeoutError as error:
            raise httpx.ConnectTimeout("timed out connecting", request=request) from error
        except OSError as error:
            message = str(error) or type(error).__name__
            if sniffio.current_async_library() == "trio" and message == "All connection attempts failed":
                # httpx's stack connects with trio's own function there, which words it so
                message = f"all attempts to connect to {origin[0]}:{origin[1]} failed"
            raise httpx.ConnectError(message, request=request) from error
        connection = _Connection(stream)
        self._open.add(connection)
        return connection

    async def _discard(self, connection: _Connection) -> None:
        self._open.discard(connection)
        await connection.close()

    async def _exchange(
        self, connection: _Connection, request: httpx.Request, head: bytes, timeouts: Any, *, reused: bool
    ) -> httpx.Response:
        """Send the request on `connection` and read the response's head. `_Stale` when a reused
        connection refused the request (the caller tries a new one); any other failure closes
        the connection."""
        buffer = b""
        try:
            try:
                with anyio.fail_after(_seconds(timeouts, "write")):
                    await connection.stream.send(head)
            except TimeoutError as error:
                raise httpx.WriteTimeout("timed out sending the request", request=request) from error
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as error:
                if reused:
                    raise _Stale from error
                raise httpx.WriteError(str(error) or type(error).__name__, request=request) from error
            read = _seconds(timeouts, "read")
            while True:
                try:
                    while (found := _HEAD_END.search(buffer)) is None:
                        if len(buffer) > _MAX_HEAD:
                            raise httpx.RemoteProtocolError("the response head is too long", request=request)
                        with anyio.fail_after(read):
                            buffer += await connection.stream.receive(_READ)
                except TimeoutError as error:
                    raise httpx.ReadTimeout("timed out waiting for the response", request=request) from error
                except anyio.ClosedResourceError as error:  # the client was closed under this wait
                    raise httpx.ReadError("the connection was closed", request=request) from error
                except (anyio.EndOfStream, OSError, anyio.BrokenResourceError) as error:
                    message = (  # httpcore's wording for the first
                        "Server disconnected without sending a response."
                        if not buffer
                        else "the server closed the connection in the middle of the response head"
                    )
                    raise httpx.RemoteProtocolError(message, request=request) from error
                end, rest = found.start(), found.end()
                status, reason, headers = _parse_head(buffer[:end], request)
                if not 100 <= status < 200 or status == 101:
                    break
                # An informational response (100 Continue, 103 Early Hints): the real one follows,
                # as h11 (httpx's stack) reads it.
                buffer = buffer[rest:]
        except _Stale:
            raise
        except BaseException:
            await self._discard(connection)
            raise
        connection.buffer = buffer[rest:]
        # An HTTP/1.0 answer ends its connection, keep-alive header or not, as h11 reads it.
        persistent = buffer.startswith(b"HTTP/1.1 ")
        stream = _Body(self, connection, request, status, headers, read, persistent=persistent)
        return httpx.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    async def _release(self, connection: _Connection, origin: tuple[str, int], reusable: bool) -> None:
        if reusable and not connection.buffer and not self._closed and self._idle_count < self._max_idle:
            self._idle.setdefault(origin, []).append(connection)
            self._idle_count += 1
        else:
            await self._discard(connection)

    async def aclose(self) -> None:
        self._closed = True
        connections, self._open = list(self._open), set()
        self._idle.clear()
        self._idle_count = 0
        for connection in connections:
            await connection.close()
        await self._fallback.aclose()


class _Stale(Exception):
    """A reused connection refused the request's bytes: try a new one."""


def _parse_head(head: bytes, request: httpx.Request) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    lines = [line.removesuffix(b"\r") for line in head.split(b"\n")]
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}", request=request)
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and headers:  # an obsolete line fold, joined as h11 joins it
            name, value = headers.pop()
            line = name + b":" + value + b" " + line.lstrip(b" \t")
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise httpx.RemoteProtocolError(f"a malformed header line: {line[:80]!r}", request=request)
        headers.append((name, value.strip()))
    _check_framing(headers, request)
    return int(parts[1]), parts[2] if len(parts) > 2 else b"", headers


def _check_framing(headers: list[tuple[bytes, bytes]], request: httpx.Request) -> None:
    """h11's rules for the headers that frame a body (httpx's stack refuses what breaks them, and
    so must this reader): one Content-Length of digits, one Transfer-Encoding, and that one
    ``chunked`` (a gzip transfer coding would hand the caller compressed bytes)."""
    length: bytes | None = None
    coded = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            values = {part.strip() for part in value.split(b",")}
            single = values.pop() if len(values) == 1 else b""
            if not single.isdigit() or len(single) > 20 or length not in (None, single):
                raise httpx.RemoteProtocolError(f"a bad Content-Length: {value[:40]!r}", request=request)
            length = single
        elif lowered == b"transfer-encoding":
            if coded or value.lower() != b"chunked":
                raise httpx.RemoteProtocolError(
                    f"only Transfer-Encoding: chunked is supported, not {value[:40]!r}", request=request
                )
            coded = True


def _readable(connection: _Connection) -> bool:
    """Whether an idle connection's socket has something to read (bytes, or the end): httpcore's
    test before it reuses one."""
    try:
        sock = connection.stream.extra(anyio.abc.SocketAttribute.raw_socket)
    except anyio.TypedAttributeLookupError:  # pragma: no cover - a TCP stream always has one
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])  # pragma: no cover - Windows
    except (OSError, ValueError):  # a socket closed under us
        return True


class _Body(httpx.AsyncByteStream):
    """A response body as the socket delivers it: de-chunked, a whole read per item.

    An async iterator object rather than an async generator: a consumer that stops early (httpx's
    own stream wrapper does not close the iterator it reads) leaves no generator to finalize."""

    def __init__(
        self,
        transport: Http11Transport,
        connection: _Connection,
        request: httpx.Request,
        status: int,
        headers: list[tuple[bytes, bytes]],
        read: float | None,
        *,
        persistent: bool = True,
    ) -> None:
        self._transport = transport
        self._connection = connection
        self._request = request
        self._read = read
        self._buffer, connection.buffer = connection.buffer, b""
        self._done = False
        self._released = False
        self._remaining = 0  # chunked: the current chunk's data still to come
        self._crlf = False  # chunked: the CRLF after a chunk's data is still to come
        fields = {name.lower(): value for name, value in headers}
        self._keep_alive = persistent and b"close" not in fields.get(b"connection", b"").lower()
        self._chunked = b"chunked" in fields.get(b"transfer-encoding", b"").lower()
        length = fields.get(b"content-length")
        self._length: int | None = int(length) if length is not None and length.isdigit() else None
        self._expected = self._length
        if request.method == "HEAD" or status in _NO_BODY_STATUSES or 100 <= status < 200:
            self._chunked, self._length = False, 0
        if not self._chunked and self._length is None:
            self._keep_alive = False  # the body ends when the connection does

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self._finished():
                raise StopAsyncIteration
            data = self._decode_chunks() if self._chunked else self._decode_plain()
            if data:
                return data
            if self._finished():
                raise StopAsyncIteration
            more = await self._receive()
            if more:
                self._buffer += more
            elif self._chunked or self._length:
                raise self._cut()
            else:
                self._done = True  # a body delimited by the connection's end

    def _finished(self) -> bool:
        return self._done

    async def _receive(self) -> bytes:
        """The next socket read; b"" at the end of the connection."""
        try:
            with anyio.fail_after(self._read):
                return await self._connection.stream.receive(_READ)
        except TimeoutError as error:
            raise httpx.ReadTimeout("timed out reading the response", request=self._request) from error
        except anyio.EndOfStream:
            return b""
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as error:
            # ClosedResourceError: the client was closed (aclose()) under this read
            raise httpx.ReadError(str(error) or type(error).__name__, request=self._request) from error

    def _cut(self) -> httpx.RemoteProtocolError:
        # Worded as httpx's own HTTP/1.1 stack (h11) words it.
        if self._chunked:
            detail = "incomplete chunked read"
        else:
            expected = self._expected or 0
            detail = f"received {expected - (self._length or 0)} bytes, expected {expected}"
        return httpx.RemoteProtocolError(
            f"peer closed connection without sending complete message body ({detail})", request=self._request
        )

    def _malformed(self, what: str) -> httpx.RemoteProtocolError:
        return httpx.RemoteProtocolError(f"malformed chunked encoding: {what}", request=self._request)

    def _decode_plain(self) -> bytes:
        data, self._buffer = self._buffer, b""
        if self._length is None:
            return data
        if len(data) >= self._length:
            data, self._connection.buffer = data[: self._length], data[self._length :]
            self._length = 0
            self._done = True
            return data
        self._length -= len(data)
        return data

    def _decode_chunks(self) -> bytes:
        """The data of every chunk the buffer completes or continues, joined; `_done` once the
        last chunk and its trailers are in."""
        buffer = self._buffer
        pieces: list[bytes] = []
        position, size = 0, len(buffer)
        while True:
            if self._remaining:
                take = min(self._remaining, size - position)
                if take:
                    pieces.append(buffer[position : position + take])
                    position += take
                    self._remaining -= take
                if self._remaining:
                    break
                self._crlf = True
            if self._crlf:
                if size - position < 2:
                    break
                if buffer[position : position + 2] != b"\r\n":
                    raise self._malformed("no CRLF after a chunk's data")
                position += 2
                self._crlf = False
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                if size - position > 1024:
                    raise self._malformed("a chunk size line over 1 KiB")
                break
            size_text = buffer[position:line_end].split(b";", 1)[0].rstrip(b" \t")
            # Hex digits only, as h11 reads them: int() would also take "0x", "+", "-" and "_".
            if not 0 < len(size_text) <= 20 or not _HEX.issuperset(size_text):
                raise self._malformed(f"a chunk size of {size_text[:20]!r}")
            chunk_size = int(size_text, 16)
            if chunk_size == 0:  # the last chunk, then trailers up to an empty line
                if buffer[line_end : line_end + 4] == b"\r\n\r\n":
                    body_end = line_end + 4
                else:
                    trailers = buffer.find(b"\r\n\r\n", line_end + 2)
                    if trailers < 0:
                        break
                    body_end = trailers + 4
                self._connection.buffer = buffer[body_end:]
                self._buffer = b""
                self._done = True
                return b"".join(pieces)
            position = line_end + 2
            self._remaining = chunk_size
        self._buffer = buffer[position:]
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        origin = (self._request.url.host, self._request.url.port or 80)
        await self._transport._release(self._connection, origin, self._done and self._keep_alive)
