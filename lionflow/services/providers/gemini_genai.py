"""The Google Gemini adapter (``provider="gemini"``), over the official ``google-genai`` SDK."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any, ClassVar, cast

import anyio
import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from lionflow.errors import ConfigurationError, ProviderConnectionError, ProviderError, TimeoutPhase
from lionflow.services.chunk import Chunk
from lionflow.services.providers._errors import interrupted, sdk_timeout, status_error
from lionflow.services.providers.base import ChunkStream, ModelRequest, SdkProvider
from lionflow.services.providers.gemini_genai_request import convert_messages, generate_config
from lionflow.services.providers.gemini_genai_response import SDK_FIELDS, FieldReader, GeminiMapper

# The HTTP responses opened by the stream being iterated now (see `_Stream`), for the response hook.
_OPENED: ContextVar[list[httpx2.Response] | None] = ContextVar("lionflow_gemini_opened", default=None)


async def _record_response(response: httpx2.Response) -> None:
    opened = _OPENED.get()
    if opened is not None:
        opened.append(response)


class _Stream:
    """One streamGenerateContent call: the SDK's async iterator and the HTTP response beneath it.

    The SDK stacks several async generators over the httpx2 response, and closing the outermost
    one (the object it returns) leaves the inner ones, and the socket, open until garbage
    collection. So the response is captured when it opens (`_record_response`, an httpx2 event
    hook on the client this adapter owns) and closed directly. `opened` is that list: filled in
    `open()`, or on the first step when the SDK sends the request only then (`sends_later`).
    """

    def __init__(
        self,
        events: AsyncIterator[types.GenerateContentResponse],
        opened: list[httpx2.Response],
        *,
        sends_later: bool,
        resumable: bool,
    ) -> None:
        self._events = events
        self._resumable = resumable
        self._sends_later = sends_later
        self.opened = opened

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> types.GenerateContentResponse:
        if not self._sends_later:
            return await self._events.__anext__()
        # The SDK sends the request on the first step (automatic continuation sends more on
        # later ones), in this task: the hook sees this list.
        token = _OPENED.set(self.opened)
        try:
            return await self._events.__anext__()
        finally:
            _OPENED.reset(token)

    async def aclose(self) -> None:
        for response in self.opened:
            await response.aclose()  # the server sees the disconnect now
        if self.opened and not self._resumable:
            # Let the SDK's generators finish here rather than in finalizers: reading the closed
            # response fails at once. (With automatic continuation this could start a new request.)
            with contextlib.suppress(Exception):
                async for _ in self._events:
                    pass
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()


def _sends_at_once(config: types.GenerateContentConfig) -> bool:
    """Whether the stream is one plain request, which `open()` can send itself through the SDK's
    inner method: no automatic continuation or function calling (both make more requests from
    inside the stream), and only `types.Tool`s (the SDK would turn MCP sessions into tools)."""
    calling = config.automatic_function_calling
    return (
        not config.automatic_continuation
        and calling is not None
        and bool(calling.disable)
        and all(isinstance(tool, types.Tool) for tool in config.tools or ())
    )


async def _single(response: Any) -> AsyncIterator[Any]:
    yield response


class GeminiProvider(SdkProvider):
    """Gemini through ``genai.Client().aio.models.generate_content_stream(model=, contents=, config=)``
    (``generate_content`` when ``stream=False``).

    The key comes from ``api_key=``, ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY`` (in that order, as the
    SDK has it); with a ``base_url`` (or ``GOOGLE_GEMINI_BASE_URL``, read by the SDK) and no key, a
    placeholder is sent. Options: ``api_version`` (default ``"v1beta"``; the SDK's own default is
    ``v1``) and ``default_headers``.

    Provider-specific choices:

    - No default ``max_tokens`` (Gemini needs none). ``max_tokens`` -> ``max_output_tokens``,
      ``stop`` -> ``stop_sequences``; ``tools`` become one ``Tool`` of function declarations with
      the JSON schema as ``parameters_json_schema`` (``types.Tool`` objects, such as google_search,
      pass as given); ``tool_choice`` -> ``function_calling_config`` mode AUTO / NONE / ANY (with
      ``allowed_function_names`` for one named tool). Any other parameter must be a field of
      ``GenerateContentConfig`` (``thinking_config``, ``top_k``, ...) or raises ConfigurationError.
    - ``response_format`` (a model class or a JSON schema) -> ``response_mime_type="application/json"``
      and the schema, as is, in ``response_json_schema``; the JSON streams as text.
    - The SDK's automatic function calling and automatic continuation are turned off unless passed.
      When either is on, the SDK sends the request only when the stream is first read: the
      ``connect`` timeout then does not apply, and ``first_chunk`` covers the wait for the headers.
    - Parts with ``thought=True`` stream as ``reasoning``. Function calls arrive whole: one
      ``tool_call`` chunk each, with Gemini's id or ``call_<n>``, and the Gemini 3 thought signature
      in the chunk's metadata (``thought_signature``, base64); assistant tool calls sent back may
      carry it as ``extra_content.google.thought_signature``.
    - Usage repeats running totals on every response; the last one is reported: promptTokenCount ->
      input, candidatesTokenCount -> output (thoughts not included), thoughtsTokenCount -> reasoning,
      cachedContentTokenCount -> cached, totalTokenCount as sent.
    - ``finishReason``: STOP -> ``stop`` (``tool_calls`` when a function was called), MAX_TOKENS ->
      ``length``, the safety family (SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII,
      IMAGE_*) -> ``content_filter``, anything else -> ``stop``; the finish chunk's metadata keeps
      ``finishReason``. A blocked prompt (no candidates) -> ``content_filter`` with ``blockReason``.
    - A stream that ends before a ``finishReason`` raises StreamInterrupted.

    ``transport="native"`` is `NativeGeminiProvider` (`_native_gemini`): the same requests, chunks
    and errors without google-genai in the path of a delta.
    """

    name: ClassVar[str] = "gemini"
    option_names: ClassVar[frozenset[str]] = frozenset({"api_version", "default_headers"})
    # The SDK's own order: GOOGLE_API_KEY wins when both are set.
    api_key_variables: ClassVar[tuple[str, ...]] = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    base_url_variable: ClassVar[str | None] = "GOOGLE_GEMINI_BASE_URL"
    endpoints: ClassVar[tuple[str, ...]] = ("generate_content",)
    native: ClassVar[str | None] = "lionflow.services.providers._native_gemini:NativeGeminiProvider"
    fields: ClassVar[FieldReader] = SDK_FIELDS
    """How `_events()` reads the responses it maps (the native transport reads JSON)."""
    # What the SDK lets through: its own API errors, a streamed body it cannot parse (a whole one
    # raises json's error, which every adapter maps) and the HTTP library's.
    sdk_errors: ClassVar[tuple[type[BaseException], ...]] = (
        genai_errors.APIError,
        genai_errors.UnknownApiResponseError,
        httpx2.HTTPError,
    )
    _client: genai.Client

    def _make_client(self) -> genai.Client:
        options = self.settings.options
        headers = options.get("default_headers")
        # Our own HTTP client, so that the response hook sees every response (the SDK would pick
        # aiohttp when installed) and lionflow's timeouts are the only ones (timeout=None).
        self._http = httpx2.AsyncClient(
            timeout=None, follow_redirects=True, event_hooks={"response": [_record_response]}
        )
        http_options = types.HttpOptions(
            base_url=self.settings.base_url,
            api_version=options.get("api_version", "v1beta"),
            headers=dict(headers) if headers else None,
            retry_options=types.HttpRetryOptions(attempts=1),  # lionflow retries itself
            httpx_async_client=self._http,
        )
        # vertexai=False: the Gemini API whatever GOOGLE_GENAI_USE_VERTEXAI says. The Client lives as
        # long as this provider: dropping it mid-stream would let its finalizer close transports.
        return genai.Client(api_key=self.client_key, vertexai=False, http_options=http_options)

    def _error(self, error: BaseException, phase: TimeoutPhase) -> ProviderError:
        """A timeout of the HTTP client is a `ProviderTimeout` of `phase`."""
        if isinstance(error, genai_errors.APIError):
            message = f"{error.status}: {error.message}" if error.status else str(error.message or error)
            headers = getattr(error.response, "headers", None)
            # Mid-stream the SDK takes `code` from the error payload; without a usable one, call it a 500.
            code = error.code if isinstance(error.code, int) and error.code >= 400 else 500
            return status_error(code, message, provider="gemini", headers=headers)
        if isinstance(error, httpx2.TimeoutException):
            return sdk_timeout(error, phase, provider="gemini")
        if isinstance(error, httpx2.TransportError):
            return ProviderConnectionError(f"connection to Gemini failed: {error!r}", provider="gemini")
        return ProviderError(f"Gemini SDK error: {error}", provider="gemini")

    async def open(self, request: ModelRequest) -> ChunkStream:
        system, contents = convert_messages(request.messages)
        if not contents:
            raise ConfigurationError(
                "Gemini needs at least one user or assistant message besides the system prompt"
            )
        config = generate_config(request.params, system)
        models = self._client.aio.models
        # (a google-genai without the private method that sends at once falls back to the public one)
        sends_later = not _sends_at_once(config) or not hasattr(models, "_generate_content_stream")
        opened: list[httpx2.Response] = []
        token = _OPENED.set(opened)  # the hook adds the response as soon as its headers arrive
        try:
            if not request.stream:
                response = await models.generate_content(
                    model=request.model, contents=contents, config=config
                )
                return ChunkStream(self._events(_single(response), request))
            if sends_later:
                # Only builds the SDK's generator: the request goes out on the first step.
                events = await models.generate_content_stream(
                    model=request.model, contents=contents, config=config
                )
            else:
                # The public method above defers the request to the first step, beyond the
                # connect timeout (which lasts until the headers arrive) and into first_chunk's.
                # This, the one request it would make, sends it and returns with the headers in.
                opening = await models._generate_content_stream(
                    model=request.model, contents=contents, config=config
                )
                events = cast(AsyncIterator[types.GenerateContentResponse], opening)
        except BaseException:
            # A response whose headers came in (an error status's body being read, a whole answer's)
            # is closed here: the SDK leaves it open when that read fails or is cancelled.
            with anyio.CancelScope(shield=True):
                for opened_response in opened:
                    await opened_response.aclose()
            # With the headers in, the provider was reached: not a connect timeout.
            with self._map_errors("first_chunk" if opened else "connect", mid_stream=False):
                raise
        finally:
            _OPENED.reset(token)
        stream = _Stream(
            events, opened, sends_later=sends_later, resumable=bool(config.automatic_continuation)
        )
        return ChunkStream(self._events(stream, request), close=stream.aclose)

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        await self._http.aclose()  # the SDK leaves a client it was given to its owner
        self._client.close()

    async def _events(self, events: AsyncIterator[Any], request: ModelRequest) -> AsyncIterator[Chunk]:
        mapper = GeminiMapper(self.name, request.model, self.fields)
        received = sent = False
        while True:
            try:
                event = await events.__anext__()
            except StopAsyncIteration:
                break
            except BaseException:
                # Before the first response the request failed (HTTP status, connection); after it,
                # the stream was cut or carried an error payload. Where the SDK sends the request on
                # the first step (`sends_later`), a timeout before the answer began is still the
                # connect phase.
                answered = received or (isinstance(events, _Stream) and bool(events.opened))
                phase: TimeoutPhase = "idle" if sent else "first_chunk" if answered else "connect"
                with self._map_errors(phase, mid_stream=received):
                    raise
            received = True
            chunks = mapper.feed(event)
            sent = sent or bool(chunks)
            for chunk in chunks:
                yield chunk
        if not mapper.ended:
            lost = ProviderConnectionError(
                "the stream ended before Gemini sent a finishReason", provider=self.name
            )
            raise interrupted(lost)
        for chunk in mapper.closing():
            yield chunk
