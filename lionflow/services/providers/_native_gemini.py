"""Gemini over the native transport: ``provider="gemini"`` with ``transport="native"`` (see `_native`).

The request is google-genai's own: the messages and config the SDK adapter builds, converted to the
wire JSON by the SDK's converter (`wire_request`), once per call, and sent where the SDK sends it:
``{base_url}/{api_version}/models/{model}:streamGenerateContent?alt=sse`` (``:generateContent``
when not streamed), the key in ``x-goog-api-key``, the call's ``http_options`` (headers, base_url,
api_version, timeout in milliseconds, extra_body) applied as the SDK applies them. Responses are
mapped by the SDK adapter's `GeminiMapper`, reading the decoded JSON (`WIRE_FIELDS`).

google-genai's reading of a stream is mirrored, not the SSE specification (`GeminiLines`): only
``data: `` lines (with the space) are data, joined with LF up to a blank line; every other line
is raw JSON, buffered until its braces balance (how an error body arrives); what is left at the
end is dispatched. A JSON object whose first key is ``error`` is a google-genai `ClientError` /
`ServerError` (by its ``code``); data that is not JSON its `UnknownApiResponseError`. Error
statuses go through google-genai's own `APIError.raise_for_async_response`, so that message, status
and retry headers are read as the SDK reads them; the SDK adapter's `_error()` maps all of these.
These exceptions are built only on the way to an error, never per delta.

The SDK's automatic function calling and automatic continuation make requests from inside its
stream; over the native transport they are refused (ConfigurationError).
"""

from __future__ import annotations

import base64
import enum
import json
import math
import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar
from urllib.parse import urlparse, urlunparse

import anyio
import httpx
from google.genai import _common, types
from google.genai import errors as genai_errors
from google.genai._api_client import GOOGLE_AI_API_DEFAULT_VERSION as DEFAULT_API_VERSION

from lionflow.errors import ConfigurationError, ProviderConnectionError, ProviderError, TimeoutPhase
from lionflow.services.chunk import Chunk
from lionflow.services.providers._errors import interrupted, sdk_timeout
from lionflow.services.providers._native import MALFORMED, NativeClient, decode
from lionflow.services.providers.base import ChunkStream, ModelRequest
from lionflow.services.providers.gemini_genai import GeminiProvider, _sends_at_once, _single
from lionflow.services.providers.gemini_genai_request import convert_messages, generate_config, wire_request
from lionflow.services.providers.gemini_genai_response import FieldReader, GeminiMapper

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/"

# -- reading the JSON --------------------------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _enum_name(kind: type[enum.Enum], value: Any) -> str:
    # As the SDK's case-insensitive enums read it (an unknown value keeps its own spelling).
    return str(kind(value).name)


def _wire_signature(value: str) -> str:
    # The SDK reads base64 of either alphabet, padded or not, into bytes; the mapper writes them back.
    standard = value.replace("-", "+").replace("_", "/")
    return base64.b64encode(base64.b64decode(standard + "=" * (-len(standard) % 4))).decode("ascii")


WIRE_FIELDS = FieldReader(dict.get, _camel, enum_name=_enum_name, signature=_wire_signature)
"""Reads the decoded JSON of Gemini's responses (camelCase keys)."""


def _response(value: Any) -> Any:
    """A decoded response as the mapper reads it: a JSON object as is; the SDK reads a list, a
    string or null as an empty response, and fails on a number."""
    if value.__class__ is dict:
        return value
    if value is None or isinstance(value, str | list):
        return {}
    raise TypeError(f"argument of type {type(value).__name__!r} is not iterable")


def _loads(data: bytes) -> Any:
    """Event `data` that msgspec refused, as the SDK reads it: ``json.loads`` of its text (which
    takes NaN, lone surrogates, numbers out of range, bytes that are not UTF-8), and its error."""
    text = data.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise genai_errors.UnknownApiResponseError(
            f"Failed to parse response as JSON. Raw response: {text}"
        ) from error


def _checked(event: Any, response: httpx.Response) -> Any:
    """A streamed event that is not a plain response: a JSON object whose first key is ``error``
    raises google-genai's error for it, by the payload's ``code`` whatever it is (as the SDK's
    `async_request_streamed` does); anything else is read as `_response` reads it."""
    if event.__class__ is dict and next(iter(event)) == "error":
        genai_errors.APIError.raise_error(event.get("error", {}).get("code"), event, response)
    return _response(event)


# -- the stream's lines ------------------------------------------------------------------------------

_CR = b"\r"
_LINE_ENDS = (b"\r", b"\n")
_DATA = b"data: "


class GeminiLines:
    """google-genai's reading of a streamed body (``HttpResponse._aiter_response_stream``), on
    bytes: lines end at CR, LF or CRLF (a trailing CR is held until the next read shows whether LF
    follows); ``data: `` lines are an event's data, dispatched, joined with LF, at a blank line;
    any other line is raw JSON, gathered until its braces balance outside strings. `feed()` gives
    the payloads a read completed, `end()` the last ones (the raw rest, then the data rest)."""

    __slots__ = ("_cr", "_data", "_depth", "_escaped", "_in_string", "_partial", "_raw")

    def __init__(self) -> None:
        self._partial: list[bytes] = []  # the start of a line no read has ended yet
        self._cr = False
        self._data: list[bytes] = []
        self._raw: list[bytes] = []
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._cr:
            chunk = _CR + chunk
            self._cr = False
        if chunk[-1:] == _CR:
            self._cr = True
            chunk = chunk[:-1]
        if not chunk:
            return []
        lines = chunk.splitlines()
        tail = None if chunk[-1:] in _LINE_ENDS else lines.pop()
        partial = self._partial
        if lines and partial:
            partial.append(lines[0])
            lines[0] = b"".join(partial)
            partial.clear()
        if tail is not None:
            partial.append(tail)
        return self._lines(lines) if lines else []

    def end(self) -> list[bytes]:
        payloads = []
        if self._partial or self._cr:
            payloads = self._lines([b"".join(self._partial)])
            self._partial.clear()
            self._cr = False
        raw = self._flush_raw()
        if raw:
            payloads.append(raw)
        if self._data:
            payloads.append(b"\n".join(self._data))
            self._data.clear()
        return payloads

    def _lines(self, lines: list[bytes]) -> list[bytes]:
        payloads: list[bytes] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    payloads.append(b"\n".join(data))
                    data.clear()
            elif line.startswith(_DATA):  # nearly every line
                data.append(line[6:])
            else:
                raw = self._raw_line(line)
                if raw is not None:
                    payloads.append(raw)
        return payloads

    def _raw_line(self, line: bytes) -> bytes | None:
        # (byte by byte: braces, quotes and backslashes are ASCII, never part of a UTF-8 sequence)
        depth, in_string, escaped = self._depth, self._in_string, self._escaped
        for byte in line:
            if in_string:
                if escaped:
                    escaped = False
                elif byte == 92:  # backslash
                    escaped = True
                elif byte == 34:  # quote
                    in_string = False
            elif byte == 34:
                in_string = True
            elif byte == 123:  # {
                depth += 1
            elif byte == 125:  # }
                depth -= 1
        self._depth, self._in_string, self._escaped = depth, in_string, escaped
        self._raw.append(line)
        return self._flush_raw() if depth == 0 else None

    def _flush_raw(self) -> bytes:
        raw = b"".join(self._raw)
        self._raw.clear()
        self._depth = 0
        self._in_string = self._escaped = False
        return raw


# -- the adapter -------------------------------------------------------------------------------------


def _reads(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's reads: from the transport's stream itself when the body has no content encoding
    (as `_native.EventReader` reads them: httpx's layers cost more per read than the event a read
    carries, and its exception mapping is in that stream)."""
    encoded = response.headers.get("content-encoding", "identity").lower() not in ("", "identity")
    stream: Any = response.stream
    if encoded or not hasattr(stream, "__aiter__"):
        return response.aiter_bytes()
    # lionflow's HTTP/1.1 body (inside httpx's wrapper) is an iterator object: read without the
    # wrapper's async generator, which warns when left unclosed (a stream cancelled, under trio)
    inner: Any = getattr(stream, "_stream", None)
    reads: AsyncIterator[bytes] = inner if hasattr(inner, "__anext__") else stream.__aiter__()
    return reads


def _join_url(base_url: str, path: str) -> str:
    # google-genai's join_url_path: one slash between the base URL's path and `path`.
    parsed = urlparse(base_url)
    base_path = parsed.path[:-1] if parsed.path.endswith("/") else parsed.path
    path = path[1:] if path.startswith("/") else path
    return urlunparse(parsed._replace(path=base_path + "/" + path))


class NativeGeminiProvider(GeminiProvider):
    """`GeminiProvider` over the native transport (``transport="native"``): same requests, same
    chunks, same errors; ``raw_response`` holds each decoded response (a dict). See the module."""

    transport: ClassVar[str] = "native"
    fields: ClassVar[FieldReader] = WIRE_FIELDS
    # httpx's errors and the google-genai errors this module raises as the SDK would; the SDK
    # adapter's `_error()` maps the latter.
    sdk_errors: ClassVar[tuple[type[BaseException], ...]] = (
        httpx.HTTPError,
        genai_errors.APIError,
        genai_errors.UnknownApiResponseError,
    )
    _native: NativeClient
    _api_version: str | None

    def _make_client(self) -> Any:
        options = self.settings.options
        headers = {"x-goog-api-key": self.client_key.strip()} | dict(options.get("default_headers") or {})
        # The URL is whole in each request: a call's http_options may name another server.
        self._native = NativeClient("", headers)
        self._native.http.follow_redirects = True  # as the SDK adapter's HTTP client
        self._api_version = options.get("api_version", "v1beta")
        if self._api_version is None:  # google-genai's own choice, made when its client is built
            variable = os.environ.get("GOOGLE_GENAI_API_VERSION")
            self._api_version = "v1beta" if variable == "beta" else (variable or DEFAULT_API_VERSION)
        return self._native

    async def aclose(self) -> None:
        await self._native.close()

    def _error(self, error: BaseException, phase: TimeoutPhase) -> ProviderError:
        if isinstance(error, httpx.TimeoutException):
            return sdk_timeout(error, phase, provider="gemini")
        if isinstance(error, httpx.TransportError):
            return ProviderConnectionError(f"connection to Gemini failed: {error!r}", provider="gemini")
        return super()._error(error, phase)

    async def open(self, request: ModelRequest) -> ChunkStream:
        system, contents = convert_messages(request.messages)
        if not contents:
            raise ConfigurationError(
                "Gemini needs at least one user or assistant message besides the system prompt"
            )
        config = generate_config(request.params, system)
        if not _sends_at_once(config):
            raise ConfigurationError(
                "automatic_continuation, automatic function calling and MCP tools run inside "
                "google-genai: use transport='sdk' for them"
            )
        path, body = wire_request(request.model, contents, config, stream=request.stream)
        url, headers, timeout = self._call_options(path, body, config.http_options)
        with self._map_errors("connect"):
            response = await self._native.send(url, body, headers=headers, timeouts=timeout)
        try:
            # With the headers in, the provider was reached: not a connect timeout.
            with self._map_errors("first_chunk", mid_stream=False):
                if response.status_code != 200:
                    await genai_errors.APIError.raise_for_async_response(response)
                if not request.stream:
                    raw = await response.aread()
                    # (an empty body is an empty response to the SDK; one that is not JSON, json's error)
                    event = _response(_whole(raw, response) if raw else {})
        except BaseException:
            with anyio.CancelScope(shield=True):
                await response.aclose()
            raise
        if not request.stream:
            await response.aclose()
            return ChunkStream(self._events(_single(event), request))
        mapper = GeminiMapper(self.name, request.model, WIRE_FIELDS)
        return ChunkStream(self._chunks(response, mapper), close=response.aclose)

    def _call_options(
        self, path: str, body: dict[str, Any], options: types.HttpOptions | None
    ) -> tuple[str, dict[str, str], float | None]:
        """The URL, the headers beyond the client's and the timeout (seconds) of a call, with its
        ``http_options`` applied as google-genai applies them (its `extra_body` merged into `body`)."""
        base_url = self.server or DEFAULT_BASE_URL
        version: str | None = self._api_version
        headers: dict[str, str] = {}
        timeout: float | None = None
        if options is not None:
            if options.base_url is not None:
                base_url = options.base_url
            if options.api_version is not None:
                version = options.api_version
            headers = dict(options.headers or {})
            timeout = options.timeout / 1000.0 if options.timeout else None
            if options.extra_body:
                _common.recursive_dict_update(body, options.extra_body)
        if not base_url:
            raise ValueError("Base URL must be set.")
        if timeout and "X-Server-Timeout" not in headers:
            headers["X-Server-Timeout"] = str(math.ceil(timeout))
        return (
            _join_url(base_url, f"{version}/{path}" if version is not None else f"/{path}"),
            headers,
            timeout,
        )

    async def _chunks(self, response: httpx.Response, mapper: GeminiMapper) -> AsyncIterator[Chunk]:
        map_errors = self._map_errors
        lines = GeminiLines()
        reads = _reads(response)
        phase: TimeoutPhase = "first_chunk"
        received = False  # whether a response came: an error after it interrupts the stream
        reading = True
        while reading:
            with map_errors(phase, mid_stream=received):
                try:
                    payloads = lines.feed(await reads.__anext__())
                except StopAsyncIteration:
                    reading = False
                    payloads = lines.end()
                except httpx.RequestError as error:
                    # Read from the transport's stream, the error names no request: name it, as
                    # httpx does, for the timeout it was sent with (`sdk_timeout` reads it there).
                    error.request = response.request
                    raise
            for payload in payloads:
                try:
                    event = decode(payload)
                except MALFORMED:
                    with map_errors(phase, mid_stream=received):
                        event = _loads(payload)
                if event.__class__ is not dict or "error" in event:
                    with map_errors(phase, mid_stream=received):
                        event = _checked(event, response)
                received = True
                chunks = mapper.feed(event)
                if chunks:
                    phase = "idle"
                    for chunk in chunks:
                        yield chunk
        await response.aclose()
        if not mapper.ended:
            lost = ProviderConnectionError(
                "the stream ended before Gemini sent a finishReason", provider=self.name
            )
            raise interrupted(lost)
        for chunk in mapper.closing():
            yield chunk


def _whole(raw: bytes, response: httpx.Response) -> Any:
    """A whole (non-streamed) body decoded; where msgspec refuses it, ``json.loads`` of its text, as
    the SDK reads it, and json's error."""
    try:
        return decode(raw)
    except MALFORMED:
        return json.loads(response.text)
