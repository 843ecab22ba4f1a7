"""The Chat Completions wire format, shared by the adapters that speak it (`openai_chat`,
`groq_chat`): its chunks as lionflow Chunks, and its SDK errors as lionflow errors.

The openai and groq SDKs parse chat chunks into pydantic models with the same field names and keep
the fields they do not declare (DeepSeek's ``reasoning_content``, OpenRouter's ``reasoning``) as
extras. Everything here reads those objects by attribute and imports no SDK, so the Groq adapter
works with only the groq package installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any, Protocol

from lionflow.errors import ProviderConnectionError, ProviderError, StreamInterrupted, TimeoutPhase
from lionflow.services.chunk import Chunk, ChunkType, FinishReason, Usage, delta_chunk
from lionflow.services.providers._errors import sdk_timeout, status_error
from lionflow.services.providers.base import ChunkStream, ModelRequest, listed, tool_chunk

CHAT_ENDPOINTS = ("chat", "chat/completions", "chat_completions")
"""The names ``iModel(endpoint=...)`` may give the Chat Completions API (None selects it too)."""

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",  # the deprecated functions API
    "content_filter": "content_filter",
}

# Error kinds (`type` or `code` of an error body) that say the same request may work a moment later.
_TRANSIENT_KINDS = frozenset(
    {
        "server_error",
        "api_error",
        "internal_error",
        "internal_server_error",
        "overloaded_error",
        "service_unavailable",
        "rate_limit_exceeded",
        "timeout",
    }
)
# Codes that say the model's own output was wrong: sending the same request again is no cure.
_PERMANENT_CODES = frozenset({"tool_use_failed"})


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def sdk_field(obj: Any, name: str) -> Any:
    """Field `name` of an SDK object (None when absent): how the SDK transport reads an event.

    The SDKs' pydantic models keep declared fields in __dict__ and undeclared ones (DeepSeek's
    reasoning_content) in __pydantic_extra__. Looking there directly matters on this per-delta
    path: getattr of an absent field goes through pydantic's __getattr__ and an AttributeError,
    about 2 us each, more than the rest of the mapping."""
    fields = getattr(obj, "__dict__", None)
    if fields is None:
        return getattr(obj, name, None)
    value = fields.get(name)
    if value is None:
        extra = getattr(obj, "__pydantic_extra__", None)
        value = extra.get(name) if extra else None
    return value


def dict_field(obj: Any, name: str) -> Any:
    """Field `name` of a decoded JSON object (None when absent, or when `obj` is no object): how the
    native transport reads an event."""
    return obj.get(name) if obj.__class__ is dict else None


Field = Callable[[Any, str], Any]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def chat_usage(raw: Any, field: Field = sdk_field) -> Usage:
    """A Chat Completions usage object (prompt/completion tokens and their details) as `Usage`."""
    cached = field(field(raw, "prompt_tokens_details"), "cached_tokens")
    if cached is None:
        cached = field(raw, "prompt_cache_hit_tokens")  # DeepSeek's own name for it
    return Usage(
        input_tokens=_count(field(raw, "prompt_tokens")),
        output_tokens=_count(field(raw, "completion_tokens")),
        total_tokens=_count(field(raw, "total_tokens")),
        reasoning_tokens=_count(field(field(raw, "completion_tokens_details"), "reasoning_tokens")),
        cached_tokens=_count(cached),
    )


class ChatChunkMapper:
    """One stream of OpenAI-style ``chat.completion.chunk`` events (or one whole completion) as Chunks.

    Usage and finish are held back and emitted by `end()`, once each and last: OpenAI sends usage in
    a separate chunk after the finish (``choices=[]``), DeepSeek on the finish chunk, Groq in
    ``x_groq`` on the finish chunk, and OpenRouter repeats the finish reason. Tool-call ids and
    names arrive on a call's first fragment only and are remembered by index.

    `field` reads an event's fields: `sdk_field` for the SDKs' objects, `dict_field` for the native
    transport's decoded JSON; the mapping is the same either way.
    """

    def __init__(self, provider: str, field: Field = sdk_field) -> None:
        self.provider = provider
        self.field = field
        self._metadata: dict[str, Any] = {"provider": provider}
        self._started = False
        self._tool_calls: dict[tuple[int, int], tuple[str, str]] = {}
        self._native_finish: str | None = None
        self._finish_event: Any = None
        self._usage: Usage | None = None
        self._usage_event: Any = None
        self._refused = False

    @property
    def finished(self) -> bool:
        """Whether the provider has said why the output ended (a finish_reason arrived)."""
        return self._native_finish is not None

    def event_usage(self, event: Any) -> Any:
        """The usage object an event carries, if any (Groq's adapter also reads ``x_groq``)."""
        return self.field(event, "usage")

    def _start(self, event: Any) -> None:
        if self._started:
            return
        self._started = True
        model, response_id = self.field(event, "model"), self.field(event, "id")
        if model:
            self._metadata["model"] = model
        if response_id:
            self._metadata["response_id"] = response_id

    def _note_usage(self, event: Any) -> None:
        raw = self.event_usage(event)
        if raw is not None:
            self._usage, self._usage_event = chat_usage(raw, self.field), event

    def _content(self, part: Any, index: int, event: Any) -> list[Chunk]:
        """Reasoning, text and refusal of a delta or a whole message, in that order."""
        # vLLM has sent both names with the same text: take one, DeepSeek's first.
        field = self.field
        reasoning = _text(field(part, "reasoning_content")) or _text(field(part, "reasoning"))
        text, refusal = _text(field(part, "content")), _text(field(part, "refusal"))
        if not (reasoning or refusal):  # nearly every delta: text alone
            if not text:
                return []
            return [delta_chunk("text", text, index, self._metadata, event)]
        chunks: list[Chunk] = []
        parts: tuple[tuple[ChunkType, str], ...] = (
            ("reasoning", reasoning),
            ("text", text),
            ("refusal", refusal),
        )
        for kind, data in parts:
            if data:
                chunks.append(
                    Chunk(type=kind, data=data, index=index, metadata=self._metadata, raw_response=event)
                )
                self._refused = self._refused or kind == "refusal"
        return chunks

    def _fragment(self, call: Any, position: int, choice: int, event: Any) -> Chunk | None:
        field = self.field
        index = field(call, "index")
        if not isinstance(index, int):
            index = position
        function = field(call, "function")
        name = field(function, "name") or ""
        arguments = field(function, "arguments") or ""
        call_id = field(call, "id")
        key = (choice, index)
        known = self._tool_calls.get(key)
        # A different id at a known index is a new call (some compatible servers reuse index 0).
        new = known is None or bool(call_id and call_id != known[0])
        if known is None or new:
            known = self._tool_calls[key] = (call_id or f"call_{choice}_{index}", name)
        elif name and not known[1]:
            known = self._tool_calls[key] = (known[0], name)
        if not arguments and not new:
            return None
        return tool_chunk(arguments, index, known, self._metadata, event)

    def chunks(self, event: Any) -> list[Chunk]:
        """The content chunks of one streamed event (usage and finish are kept for `end()`)."""
        field = self.field
        self._start(event)
        self._note_usage(event)
        chunks: list[Chunk] = []
        for choice in field(event, "choices") or ():
            index = field(choice, "index") or 0
            delta = field(choice, "delta")
            if delta is not None:
                chunks += self._content(delta, index, event)
                for position, call in enumerate(field(delta, "tool_calls") or ()):
                    fragment = self._fragment(call, position, index, event)
                    if fragment is not None:
                        chunks.append(fragment)
            finish = field(choice, "finish_reason")
            if finish:
                self._native_finish, self._finish_event = finish, event
        return chunks

    def completion_chunks(self, completion: Any) -> list[Chunk]:
        """Every chunk of a whole (non-streamed) completion: one per part, then usage and finish."""
        field = self.field
        self._start(completion)
        self._note_usage(completion)
        chunks: list[Chunk] = []
        for choice in field(completion, "choices") or ():
            message = field(choice, "message")
            chunks += self._content(message, field(choice, "index") or 0, completion)
            for position, call in enumerate(field(message, "tool_calls") or ()):
                # A custom (free-form) tool call has `custom.input` where a function call has arguments.
                function = field(call, "function") or field(call, "custom")
                arguments = field(function, "arguments") or field(function, "input") or ""
                chunks.append(
                    Chunk(
                        type="tool_call",
                        data=arguments,
                        index=position,
                        tool_call_id=field(call, "id"),
                        tool_name=field(function, "name") or "",
                        metadata=self._metadata,
                        raw_response=completion,
                    )
                )
            finish = field(choice, "finish_reason")
            if finish:
                self._native_finish, self._finish_event = finish, completion
        return chunks + self.end()

    def stream_end(self) -> list[Chunk]:
        """`end()` of a stream that ended: StreamInterrupted when no finish_reason came. Every server
        of this format sends one; a stream that ends without it was cut off (a proxy, or the server
        closed it cleanly), and its text is not the whole answer."""
        if not self.finished:
            raise StreamInterrupted(
                f"the {self.provider} stream ended without a finish reason; it was cut off",
                provider=self.provider,
                retryable=True,
            )
        return self.end()

    def end(self) -> list[Chunk]:
        """The usage chunk (when the provider reported usage) and the one finish chunk."""
        chunks: list[Chunk] = []
        if self._usage is not None:
            chunks.append(
                Chunk(
                    type="usage", usage=self._usage, metadata=self._metadata, raw_response=self._usage_event
                )
            )
        native = self._native_finish
        reason: FinishReason = _FINISH_REASONS.get(native, "stop") if native else "stop"
        if reason == "stop" and self._refused:
            reason = "refusal"  # OpenAI ends a refusal with finish_reason="stop"
        chunks.append(
            Chunk(
                type="finish",
                finish_reason=reason,
                metadata=self._metadata | {"finish_reason": native},
                raw_response=self._finish_event,
            )
        )
        return chunks


# -- reading the stream, and errors ---------------------------------------------------------------


class SdkStream(Protocol):
    """What both SDKs' ``AsyncStream`` offer: the next parsed event."""

    async def __anext__(self) -> Any: ...


async def map_chunks(
    stream: SdkStream,
    mapper: ChatChunkMapper,
    map_errors: Callable[[TimeoutPhase], AbstractContextManager[None]],
) -> AsyncIterator[Chunk]:
    """The chunks of an open SDK stream, its errors mapped by the adapter's `map_errors` (see
    `SdkProvider._map_errors`). Only the read is guarded, never the ``yield``."""
    phase: TimeoutPhase = "first_chunk"
    while True:
        with map_errors(phase):
            try:
                event = await stream.__anext__()
            except StopAsyncIteration:
                break
        chunks = mapper.chunks(event)
        if chunks:
            phase = "idle"
        for chunk in chunks:
            yield chunk
    for chunk in mapper.stream_end():
        yield chunk


async def open_chat(
    completions: Any,
    arguments: dict[str, Any],
    mapper: ChatChunkMapper,
    request: ModelRequest,
    map_errors: Callable[[TimeoutPhase], AbstractContextManager[None]],
) -> ChunkStream:
    """Send ``completions.create(**arguments)`` (an SDK's ``client.chat.completions``), streamed or
    not as `request` says, and return its chunks."""
    with map_errors("connect"):
        if not request.stream:
            completion = await completions.create(**arguments, stream=False)
            return ChunkStream(listed(mapper.completion_chunks(completion)))
        stream = await completions.create(**arguments, stream=True)
    return ChunkStream(map_chunks(stream, mapper, map_errors), close=stream.close)


def _status(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _body_error(body: object, message: str, provider: str) -> ProviderError:
    """An error reported inside a stream body (``{"error": {...}}``), by its status or kind."""
    error = body.get("error", body) if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        return ProviderError(message, provider=provider)
    code, kind = error.get("code"), error.get("type")
    # OpenRouter puts the HTTP status in `code`; Groq adds `status_code` beside a string code.
    status = _status(error.get("status_code")) or _status(error.get("status")) or _status(code)
    detail = f"{message} ({code})" if isinstance(code, str) and not code.isdigit() else message
    result = (
        status_error(status, detail, provider=provider)
        if status is not None and status >= 400
        else ProviderError(
            detail, provider=provider, retryable=kind in _TRANSIENT_KINDS or code in _TRANSIENT_KINDS
        )
    )
    if code in _PERMANENT_CODES:
        result.retryable = False
    return result


def event_error(error: Any, provider: str) -> ProviderError:
    """The lionflow error of an error the stream sent in an event (``{"error": ...}``), as the
    SDK's `APIError` for it maps: the native transport's twin of `sdk_error` mid-stream."""
    message = error.get("message") if isinstance(error, Mapping) else None
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    return _body_error(error, message, provider)


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, Mapping) else None
    message = error.get("message") if isinstance(error, Mapping) else None
    return message if isinstance(message, str) and message else str(getattr(exc, "message", exc))


def sdk_error(
    exc: BaseException, *, provider: str, sdk: ModuleType, phase: TimeoutPhase = "connect"
) -> ProviderError | None:
    """The lionflow error for an exception of the openai or groq SDK (their exception classes share
    names), or None when `exc` is not one of the SDK's API errors. The SDK's own timeout is a
    `ProviderTimeout` of `phase`, where the adapter was waiting (see `sdk_timeout`)."""
    if isinstance(exc, sdk.APITimeoutError):
        return sdk_timeout(exc, phase, provider=provider)
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f"{exc} ({type(cause).__name__}: {cause})" if cause else str(exc)
        return ProviderConnectionError(f"the connection to {provider} failed: {detail}", provider=provider)
    if isinstance(exc, sdk.APIStatusError):
        return status_error(exc.status_code, _message(exc), provider=provider, headers=exc.response.headers)
    if isinstance(exc, sdk.APIError):
        return _body_error(exc.body, _message(exc), provider)
    return None
