"""The Anthropic Messages API over the native transport: ``provider="anthropic"`` with
``transport="native"`` (see `_native`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import httpx

# The installed SDK's own values (a private module: the SDK exports neither), so that both
# transports send the same API version and refuse the same non-streamed calls.
from anthropic._constants import ANTHROPIC_API_VERSION, MODEL_NONSTREAMING_TOKENS

from lionflow.errors import ConfigurationError, ProviderConnectionError, ProviderError, TimeoutPhase
from lionflow.services.chunk import Chunk, delta_chunk
from lionflow.services.providers._chat_completions import dict_field
from lionflow.services.providers._errors import interrupted, sdk_timeout
from lionflow.services.providers._native import (
    MALFORMED,
    TRANSPORT_ERRORS,
    EventReader,
    NativeClient,
    decode,
    wire_body,
)
from lionflow.services.providers.anthropic_messages import (
    AnthropicProvider,
    closing_chunks,
    status_failure,
)
from lionflow.services.providers.anthropic_messages_request import request_arguments
from lionflow.services.providers.base import ChunkStream, ModelRequest, listed, tool_chunk

_PATH = "/v1/messages"

# Arguments of the SDK's `messages.create()` that it sends as headers, not in the body.
_HEADER_ARGUMENTS = {"user_profile_id": "anthropic-user-profile-id", "workspace_id": "anthropic-workspace-id"}

# What the SDK gives a non-streamed call that names no timeout of its own (its client keeps the
# SDK's default timeout, see `AnthropicProvider._make_client`): ten minutes, five seconds to connect.
_NONSTREAMING_TIMEOUT = httpx.Timeout(600.0, connect=5.0)

_LONG_REQUEST = (
    "Streaming is required for operations that may take longer than 10 minutes. "
    "See https://platform.claude.com/docs/en/cli-sdks-libraries/sdks/python#long-requests for more details"
)


def _too_long(max_tokens: Any, model: Any) -> bool:
    """Whether the SDK refuses a non-streamed call (its ``_calculate_nonstreaming_timeout``): an
    hour for 128,000 tokens puts `max_tokens` past ten minutes, or past the model's own limit."""
    limit = MODEL_NONSTREAMING_TOKENS.get(model)
    return bool(3600 * max_tokens / 128_000 > 600 or (limit and max_tokens > limit))


def _error_fields(body: Any) -> tuple[Any, Any]:
    """``error.type`` and ``error.message`` of an error body (None where it has none), as the SDK's
    `APIStatusError` reads them."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        return None, None
    return error.get("type"), error.get("message")


class NativeAnthropicProvider(AnthropicProvider):
    """`AnthropicProvider` over the native transport (``transport="native"``): same requests, same
    chunks, same errors; ``raw_response`` holds each decoded event (a dict; the decoded Message of
    a non-streamed call).

    The request is the SDK adapter's own (`request_arguments`), POSTed to ``/v1/messages`` with the
    headers the installed SDK sends: the key as ``authorization: Bearer``, its
    ``anthropic-version``, ``default_headers`` over them, and ``user_profile_id``/``workspace_id`` as
    the SDK's ``anthropic-user-profile-id``/``anthropic-workspace-id`` headers. Events are read by
    the SDK's rules: an event without an ``event:`` name is dropped, ``ping`` is ignored, ``event:
    error`` ends the stream with the error its body names (mapped as the SDK adapter maps it, by
    ``error.type``), an event with empty data is skipped, an event the stream never terminated with
    a blank line is dropped, and what an event is comes from its JSON ``type``, not its name.

    A non-streamed call that names no ``timeout`` is refused as the SDK refuses it (the
    `ConfigurationError` the SDK adapter makes of the SDK's ValueError, with the SDK's words): when
    ``max_tokens`` would take the SDK's estimate (an hour per 128,000 tokens) past ten minutes, or
    past the model's own non-streaming limit (the SDK's table). Otherwise it runs with the SDK's
    timeouts for it: ten minutes, five seconds to connect.
    """

    transport: ClassVar[str] = "native"
    sdk_errors: ClassVar[tuple[type[BaseException], ...]] = TRANSPORT_ERRORS
    # json's error too: a body or event that msgspec refuses is decoded again by the SDK's own
    # decoder (`json`), so that the error says what the SDK's says (and what json accepts passes).
    malformed_errors: ClassVar[tuple[type[BaseException], ...]] = (*MALFORMED, json.JSONDecodeError)
    default_server: ClassVar[str] = "https://api.anthropic.com"
    _native: NativeClient

    def _make_client(self) -> Any:
        self._native = NativeClient(self.server or self.default_server, self._headers())
        return self._native

    def _headers(self) -> dict[str, str]:
        """The headers every request carries, as the SDK builds them: its own, then ``default_headers``
        over them (whatever the case of their names)."""
        headers = httpx.Headers(
            {"authorization": f"Bearer {self.client_key}", "anthropic-version": ANTHROPIC_API_VERSION}
        )
        headers.update(dict(self.settings.options.get("default_headers") or {}))
        return dict(headers.items())

    def _error(self, error: BaseException, phase: TimeoutPhase) -> ProviderError:
        # After the request: an error of the SDK's HTTP client escapes the SDK as it is.
        if isinstance(error, httpx.TimeoutException):
            return sdk_timeout(error, phase, provider="anthropic")
        return ProviderConnectionError(f"connection to Anthropic failed: {error}", provider="anthropic")

    def _request_error(self, error: BaseException) -> ProviderError:
        """A request that failed (until a stream's headers or a whole answer arrived): the SDK
        reports it as its APIConnectionError ("Connection error.") or APITimeoutError."""
        if isinstance(error, httpx.TimeoutException):
            return sdk_timeout(error, "connect", provider="anthropic")
        return ProviderConnectionError(
            "connection to Anthropic failed: Connection error.", provider="anthropic"
        )

    async def open(self, request: ModelRequest) -> ChunkStream:
        arguments, answer_tool = request_arguments(request)
        body = wire_body(arguments)
        headers = {name: str(body.pop(key)) for key, name in _HEADER_ARGUMENTS.items() if key in body}
        headers |= arguments.get("extra_headers") or {}
        timeouts = arguments.get("timeout")
        if request.stream:
            body["stream"] = True
        elif "timeout" not in arguments:
            if _too_long(body["max_tokens"], body["model"]):
                raise ConfigurationError(_LONG_REQUEST)
            timeouts = _NONSTREAMING_TIMEOUT
        try:
            response = await self._native.send(
                _PATH, body, headers=headers, timeouts=timeouts, params=arguments.get("extra_query")
            )
            if not request.stream:  # the SDK reads a whole answer as part of its request
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        except TRANSPORT_ERRORS as error:
            raise self._request_error(error) from error
        with self._map_errors("connect"):
            if not response.is_success:
                raise await self._status_error(response)
            if not request.stream:
                message = json.loads(response.content)
                return ChunkStream(listed(self._message_chunks(message, answer_tool)))
        reader = EventReader(response)
        return ChunkStream(self._native_events(reader, response, answer_tool), close=reader.aclose)

    async def _status_error(self, response: httpx.Response) -> ProviderError:
        """The error of a response with an error status, worded as the SDK words it."""
        try:
            await response.aread()
        finally:
            await response.aclose()
        text = response.text.strip()
        body: Any = text
        try:
            body = json.loads(text)
            message = f"Error code: {response.status_code} - {body}"
        except ValueError:
            message = text or f"Error code: {response.status_code}"
        kind, api_message = _error_fields(body)
        return status_failure(response.status_code, kind, api_message or message, response.headers)

    def _event_error(self, data: bytes, response: httpx.Response) -> ProviderError:
        """The error an ``event: error`` reports, as the SDK's stream raises it."""
        text = data.decode("utf-8", "replace")
        body: Any = text
        try:
            body = json.loads(text)
            message = f"{body}"
        except ValueError:
            message = text or f"Error code: {response.status_code}"
        kind, api_message = _error_fields(body)
        return status_failure(response.status_code, kind, api_message or message, response.headers)

    def _message_chunks(self, message: Any, answer_tool: str | None) -> list[Chunk]:
        """The chunks of a non-streamed Message (decoded JSON), as `AnthropicProvider._whole` makes them."""
        get = dict_field
        meta: dict[str, Any] = {
            "provider": self.name,
            "model": get(message, "model"),
            "response_id": get(message, "id"),
        }
        chunks: list[Chunk] = []
        for index, block in enumerate(get(message, "content") or ()):
            kind = get(block, "type")
            if kind == "text" and (text := block.get("text")):
                chunks.append(Chunk(type="text", data=text, index=index, metadata=meta, raw_response=message))
            elif kind == "thinking" and (thinking := block.get("thinking")):
                chunks.append(
                    Chunk(type="reasoning", data=thinking, index=index, metadata=meta, raw_response=message)
                )
            elif kind == "tool_use":
                tool = (block.get("id"), block.get("name"))
                chunks.append(tool_chunk(json.dumps(block.get("input")), index, tool, meta, message))
        counts = [get(message, "usage")]
        return chunks + closing_chunks(meta, counts, message, message, answer_tool, dict_field)

    async def _native_events(
        self, reader: EventReader, response: httpx.Response, answer_tool: str | None
    ) -> AsyncIterator[Chunk]:
        """The stream's chunks, as `AnthropicProvider._events` maps the SDK's events (same branches,
        on the events' JSON ``type`` where that one matches SDK classes)."""
        meta: dict[str, Any] = {"provider": self.name, "model": self.model}
        tool_blocks: dict[int, tuple[str, str]] = {}  # content block index -> (tool_use id, name)
        silent_tools: set[int] = set()  # tool_use blocks that made no chunk yet
        start_usage: Any = None
        final: dict[str, Any] | None = None
        phase: TimeoutPhase = "first_chunk"  # until a chunk went out; then "idle"
        map_errors = self._map_errors
        event: Any
        part: Any
        index: Any
        while True:
            with map_errors(phase):
                batch = await reader.batch()
            if batch is None:
                break
            for sse in batch:
                name = sse.event
                if not name or name == "ping":  # the SDK drops unnamed events
                    continue
                if name == "error":
                    raise interrupted(self._event_error(sse.data, response))
                if not sse.data:
                    continue
                try:
                    event = decode(sse.data)
                except MALFORMED:
                    with map_errors(phase):
                        event = json.loads(sse.data.decode("utf-8", "replace"))
                if event.__class__ is not dict:
                    continue
                kind = event.get("type")
                if kind == "content_block_delta":
                    part = event.get("delta")
                    part_kind = part.get("type") if part.__class__ is dict else None
                    if part_kind == "text_delta":  # nearly every event: a text delta
                        if text := part.get("text"):
                            phase = "idle"
                            yield delta_chunk("text", text, event["index"], meta, event)
                    elif part_kind == "thinking_delta":
                        if thinking := part.get("thinking"):
                            phase = "idle"
                            yield delta_chunk("reasoning", thinking, event["index"], meta, event)
                    elif part_kind == "input_json_delta":
                        index = event.get("index")
                        if (fragment := part.get("partial_json")) and index in tool_blocks:
                            silent_tools.discard(index)
                            phase = "idle"
                            yield tool_chunk(fragment, index, tool_blocks[index], meta, event)
                elif kind == "content_block_start":
                    part = event.get("content_block")
                    part_kind = part.get("type") if part.__class__ is dict else None
                    index = event.get("index")
                    if part_kind == "text":
                        if text := part.get("text"):
                            phase = "idle"
                            yield delta_chunk("text", text, index, meta, event)
                    elif part_kind == "thinking":
                        if thinking := part.get("thinking"):
                            phase = "idle"
                            yield delta_chunk("reasoning", thinking, index, meta, event)
                    elif part_kind == "tool_use":
                        tool_blocks[index] = (part.get("id"), part.get("name"))
                        silent_tools.add(index)
                        if tool_input := part.get("input"):  # normally {}, with the input streamed
                            silent_tools.discard(index)
                            phase = "idle"
                            yield tool_chunk(json.dumps(tool_input), index, tool_blocks[index], meta, event)
                elif kind == "content_block_stop":
                    index = event.get("index")
                    if index in silent_tools:
                        # A call without arguments streams no delta; it must still reach the Response.
                        silent_tools.discard(index)
                        phase = "idle"
                        yield tool_chunk("{}", index, tool_blocks[index], meta, event)
                elif kind == "message_start":
                    message = event.get("message")
                    meta = {
                        "provider": self.name,
                        "model": dict_field(message, "model"),
                        "response_id": dict_field(message, "id"),
                    }
                    start_usage = dict_field(message, "usage")
                elif kind == "message_delta":
                    final = event
        await reader.aclose()
        ending = dict_field(final, "delta")
        if final is None or dict_field(ending, "stop_reason") is None:
            # Every complete message ends with a message_delta carrying the stop_reason.
            lost = ProviderConnectionError(
                "the stream ended before Anthropic sent a stop_reason", provider=self.name
            )
            raise interrupted(lost)
        counts = [final.get("usage")] + ([start_usage] if start_usage is not None else [])
        for chunk in closing_chunks(meta, counts, ending, final, answer_tool, dict_field):
            yield chunk
