"""The Anthropic Messages API adapter (``provider="anthropic"``), over the official ``anthropic`` SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import anthropic
import httpx2
from anthropic.types import (
    InputJSONDelta,
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
)
from anthropic.types import Usage as AnthropicUsage

from lionflow.errors import ConfigurationError, ProviderConnectionError, ProviderError, TimeoutPhase
from lionflow.services.chunk import Chunk, ChunkType, FinishReason, Usage, delta_chunk
from lionflow.services.providers._chat_completions import Field, sdk_field
from lionflow.services.providers._errors import interrupted, sdk_timeout, status_error
from lionflow.services.providers.anthropic_messages_request import request_arguments
from lionflow.services.providers.base import (
    ChunkStream,
    ModelRequest,
    SdkProvider,
    backstop_timeout,
    tool_chunk,
)

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "refusal",
}

# A mid-stream `event: error` arrives on an HTTP 200 response; its `error.type` says what the status
# would have been, which decides the lionflow error and whether a retry may help.
_ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "conflict_error": 409,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


# -- response --------------------------------------------------------------------------------------


# Tuples, not `A | B`: a union written in isinstance() builds a new object on every call, and these
# checks run once per streamed event.
_BLOCK_EVENTS = (RawContentBlockDeltaEvent, RawContentBlockStartEvent)
_TEXT_PARTS = (TextBlock, TextDelta)
_THINKING_PARTS = (ThinkingBlock, ThinkingDelta)
# The SDK builds a block or delta of a type it does not know as the first of its union (a text
# one), and an event of an unknown type as a message_start without a message: each is checked for
# the type it says it is, so that what a newer API adds is passed over, as Anthropic asks.
_TEXT_TYPES = frozenset({"text", "text_delta"})
_THINKING_TYPES = frozenset({"thinking", "thinking_delta"})


def _content(part: Any) -> tuple[ChunkType, str] | None:
    """The chunk kind and text of a text or thinking block or delta; None for anything else or empty."""
    if isinstance(part, _TEXT_PARTS) and part.type in _TEXT_TYPES:
        return ("text", part.text) if part.text else None
    if isinstance(part, _THINKING_PARTS) and part.type in _THINKING_TYPES:
        return ("reasoning", part.thinking) if part.thinking else None
    return None


def _plain(value: Any) -> Any:
    """An SDK object, or a decoded JSON object, as the SDK's ``model_dump(exclude_none=True)`` has
    it: without its None fields (those of a nested plain object stay)."""
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(exclude_none=True)
    if isinstance(value, Mapping):
        return {key: item for key, item in value.items() if item is not None}
    return value


def closing_chunks(
    meta: dict[str, Any],
    counts: list[Any],
    ending: Any,
    raw: Any,
    answer_tool: str | None = None,
    field: Field = sdk_field,
) -> list[Chunk]:
    """The usage chunk (from `counts`, latest first: message_delta's totals are cumulative and
    overwrite message_start's) and the finish chunk (from `ending`: a message_delta's ``delta``, or
    the Message), both with `raw` as their ``raw_response``. With a forced `answer_tool` (structured
    output), ``tool_use`` is the answer ending: ``stop``. `field` reads the SDK's objects (the SDK
    transport) or decoded JSON (the native one, `_native_anthropic`): one mapping for both."""

    def pick(name: str) -> int:
        return next((int(value) for u in counts if (value := field(u, name)) is not None), 0)

    chunks: list[Chunk] = []
    if counts:
        details = next(
            (value for u in counts if (value := field(u, "output_tokens_details")) is not None), None
        )
        cached, creation = pick("cache_read_input_tokens"), pick("cache_creation_input_tokens")
        # Anthropic's input_tokens leaves out cache reads and writes; lionflow's counts the whole prompt.
        usage = Usage(
            input_tokens=pick("input_tokens") + cached + creation,
            output_tokens=pick("output_tokens"),
            reasoning_tokens=field(details, "thinking_tokens") if details is not None else 0,
            cached_tokens=cached,
        )
        usage_meta = (meta | {"cache_creation_input_tokens": creation}) if creation else meta
        chunks.append(Chunk(type="usage", usage=usage, metadata=usage_meta, raw_response=raw))
    stop_reason = field(ending, "stop_reason")
    finish_meta = meta | {"stop_reason": stop_reason}
    if (stop_sequence := field(ending, "stop_sequence")) is not None:
        finish_meta["stop_sequence"] = stop_sequence
    if (stop_details := field(ending, "stop_details")) is not None:
        finish_meta["stop_details"] = _plain(stop_details)
    reason = _STOP_REASONS.get(stop_reason or "", "stop")
    if reason == "tool_calls" and answer_tool is not None:
        reason = "stop"
    chunks.append(Chunk(type="finish", finish_reason=reason, metadata=finish_meta, raw_response=raw))
    return chunks


def status_failure(status: int, kind: Any, message: str, headers: Mapping[str, str]) -> ProviderError:
    """The lionflow error of an Anthropic error: an HTTP error status, or an ``event: error`` inside
    a 200 stream (`status` below 400), with the body's ``error.type`` as `kind` and `message` the
    body's ``error.message``, else the SDK's wording of the body. Both transports map with it."""
    if kind:
        message = f"{kind}: {message}"
    if status < 400:  # an `event: error` inside a 200 stream
        status = _ERROR_TYPE_STATUS.get(str(kind), 500 if kind is None else 400)
        message = f"error event mid-stream: {message}"
    return status_error(status, message, provider="anthropic", headers=headers)


class AnthropicProvider(SdkProvider):
    """Claude through the Messages API: ``AsyncAnthropic().messages.create(stream=True, ...)``.

    The raw event stream is mapped here (not the SDK's ``.stream()`` helper). The key comes from
    ``api_key=`` or ``ANTHROPIC_API_KEY``; with a ``base_url`` (or ``ANTHROPIC_BASE_URL``, read by
    the SDK) and no key, a placeholder is sent. ``endpoint`` may be None or ``"messages"``.

    Provider-specific choices:

    - ``max_tokens`` is required by Anthropic: it defaults to ``DEFAULT_MAX_TOKENS`` (4096).
    - ``stop`` becomes ``stop_sequences``; ``seed`` does not exist here and raises ConfigurationError;
      parameters this SDK's ``create()`` does not list (temperature, top_p, top_k, ...) are sent in
      ``extra_body``, so they still reach the API unchanged.
    - Usage: ``input_tokens`` is the whole prompt: Anthropic's ``input_tokens`` plus prompt-cache reads
      and writes (Anthropic counts those apart); ``cached_tokens`` is ``cache_read_input_tokens``, and
      the usage chunk's metadata keeps ``cache_creation_input_tokens``. ``reasoning_tokens`` is
      ``output_tokens_details.thinking_tokens`` when reported.
    - ``stop_reason``: end_turn, stop_sequence and pause_turn -> ``stop``; max_tokens and
      model_context_window_exceeded -> ``length``; tool_use -> ``tool_calls``; refusal -> ``refusal``.
      The finish chunk's metadata has ``stop_reason``, ``stop_sequence`` and ``stop_details``.
    - Thinking blocks stream as ``reasoning``; redacted thinking, signatures, citations and server
      tool blocks (``server_tool_use``: run by Anthropic, not by the caller) make no chunks.
    - A stream that ends before ``message_delta`` brought a ``stop_reason`` raises StreamInterrupted.
    - Structured output (``response_format`` a model class or a JSON schema): one tool whose
      ``input_schema`` is the schema, forced by ``tool_choice``, named after the model class
      (``title`` of a schema, else ``response``). Its input streams as ``tool_call`` chunks, the text
      stays empty, the structured result is read from the tool call, and ``stop_reason="tool_use"``
      finishes as ``stop``. With the caller's own tools or tool_choice, or with thinking enabled (all
      of which a forced tool excludes), Claude's own ``output_config.format`` is sent instead (newer
      models only) and the JSON comes as text.
    """

    name: ClassVar[str] = "anthropic"
    option_names: ClassVar[frozenset[str]] = frozenset({"default_headers"})
    api_key_variables: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY",)
    base_url_variable: ClassVar[str | None] = "ANTHROPIC_BASE_URL"
    endpoints: ClassVar[tuple[str, ...]] = ("messages",)
    sdk_errors: ClassVar[tuple[type[BaseException], ...]] = (anthropic.AnthropicError, httpx2.TransportError)
    native: ClassVar[str | None] = "lionflow.services.providers._native_anthropic:NativeAnthropicProvider"
    _client: anthropic.AsyncAnthropic

    def _make_client(self) -> anthropic.AsyncAnthropic:
        # An explicit key also stops the SDK from looking for credential files and profiles. The
        # client keeps the SDK's own timeout, so that it still refuses a non-streamed call it
        # expects to run past ten minutes; a stream has the backstops (see `backstop_timeout`).
        return anthropic.AsyncAnthropic(**self._client_arguments())

    def _error(self, error: BaseException, phase: TimeoutPhase) -> ProviderError:
        # (mid-stream, an httpx2 exception may escape the SDK)
        if isinstance(error, anthropic.APIStatusError):
            message = error.api_message or error.message
            return status_failure(error.status_code, error.type, message, error.response.headers)
        if isinstance(error, anthropic.APITimeoutError | httpx2.TimeoutException):
            return sdk_timeout(error, phase, provider="anthropic")
        if isinstance(error, anthropic.APIConnectionError | httpx2.TransportError):
            return ProviderConnectionError(f"connection to Anthropic failed: {error}", provider="anthropic")
        return ProviderError(f"Anthropic SDK error: {error}", provider="anthropic")

    async def open(self, request: ModelRequest) -> ChunkStream:
        arguments, answer_tool = request_arguments(request)
        try:
            with self._map_errors():
                if not request.stream:
                    message = await self._client.messages.create(**arguments)
                    return ChunkStream(self._whole(message, answer_tool))
                backstop = {"timeout": backstop_timeout(anthropic.Timeout)}  # unless the call gives one
                events = await self._client.messages.create(**(backstop | arguments), stream=True)
        except ValueError as error:  # the SDK refuses a non-streaming call it expects to be too long
            raise ConfigurationError(str(error)) from error
        return ChunkStream(self._events(events, answer_tool), close=events.close)

    async def _events(
        self, events: anthropic.AsyncStream[Any], answer_tool: str | None = None
    ) -> AsyncIterator[Chunk]:
        meta: dict[str, Any] = {"provider": self.name, "model": self.model}
        tool_blocks: dict[int, tuple[str, str]] = {}  # content block index -> (tool_use id, name)
        silent_tools: set[int] = set()  # tool_use blocks that made no chunk yet
        start_usage: AnthropicUsage | None = None
        final: RawMessageDeltaEvent | None = None
        phase: TimeoutPhase = "first_chunk"  # until a chunk went out; then "idle"
        while True:
            with self._map_errors(phase):
                try:
                    event = await events.__anext__()
                except StopAsyncIteration:
                    break
            if (
                type(event) is RawContentBlockDeltaEvent
                and type(text_delta := event.delta) is TextDelta
                and text_delta.type == "text_delta"
            ):
                # nearly every event: a text delta
                if text_delta.text:
                    phase = "idle"
                    yield delta_chunk("text", text_delta.text, event.index, meta, event)
            elif isinstance(event, _BLOCK_EVENTS):
                index = event.index
                part = event.delta if isinstance(event, RawContentBlockDeltaEvent) else event.content_block
                if content := _content(part):
                    phase = "idle"
                    yield delta_chunk(content[0], content[1], index, meta, event)
                elif isinstance(part, InputJSONDelta) and part.partial_json and index in tool_blocks:
                    silent_tools.discard(index)
                    phase = "idle"
                    yield tool_chunk(part.partial_json, index, tool_blocks[index], meta, event)
                elif isinstance(part, ToolUseBlock):
                    tool_blocks[index] = (part.id, part.name)
                    silent_tools.add(index)
                    if part.input:  # normally {}, with the input streamed in deltas
                        silent_tools.discard(index)
                        phase = "idle"
                        yield tool_chunk(json.dumps(part.input), index, tool_blocks[index], meta, event)
            elif isinstance(event, RawContentBlockStopEvent):
                if event.index in silent_tools:
                    # A call without arguments streams no delta; it must still reach the Response.
                    silent_tools.discard(event.index)
                    phase = "idle"
                    yield tool_chunk("{}", event.index, tool_blocks[event.index], meta, event)
            elif isinstance(event, RawMessageStartEvent) and event.type == "message_start":
                message = event.message
                meta = {"provider": self.name, "model": message.model, "response_id": message.id}
                start_usage = message.usage
            elif isinstance(event, RawMessageDeltaEvent):
                final = event
        if final is None or final.delta.stop_reason is None:
            # Every complete message ends with a message_delta carrying the stop_reason.
            lost = ProviderConnectionError(
                "the stream ended before Anthropic sent a stop_reason", provider=self.name
            )
            raise interrupted(lost)
        counts = [final.usage] + ([start_usage] if start_usage is not None else [])
        for chunk in closing_chunks(meta, counts, final.delta, final, answer_tool):
            yield chunk

    async def _whole(self, message: Message, answer_tool: str | None = None) -> AsyncIterator[Chunk]:
        meta: dict[str, Any] = {"provider": self.name, "model": message.model, "response_id": message.id}
        for index, block in enumerate(message.content):
            if content := _content(block):
                yield Chunk(
                    type=content[0], data=content[1], index=index, metadata=meta, raw_response=message
                )
            elif isinstance(block, ToolUseBlock):
                yield tool_chunk(json.dumps(block.input), index, (block.id, block.name), meta, message)
        for chunk in closing_chunks(meta, [message.usage], message, message, answer_tool):
            yield chunk
