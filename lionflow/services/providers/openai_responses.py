"""The OpenAI Responses API (``POST /v1/responses``) as a lionflow provider adapter.

Reached by ``iModel(provider="openai", endpoint="responses")``. The Responses API streams typed,
named events (``response.output_text.delta``, ``response.function_call_arguments.delta``, ...)
keyed by ``output_index``, and reports usage and the final status only in its terminal event
(``response.completed`` / ``response.incomplete`` / ``response.failed``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import openai

from lionflow.errors import (
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
    StreamInterrupted,
    TimeoutPhase,
)
from lionflow.services.chunk import Chunk, ChunkType, FinishReason, Usage, delta_chunk
from lionflow.services.providers._chat_completions import Field, sdk_field
from lionflow.services.providers._errors import (
    interrupted,
    malformed,
    sdk_timeout,
    status_error,
    transport_error,
)
from lionflow.services.providers.base import ChunkStream, ModelRequest, listed
from lionflow.services.providers.openai_chat import OpenAIClientProvider
from lionflow.services.providers.openai_responses_request import request_arguments

# Error codes of `error` events and failed responses that may succeed when the request is sent again.
_RATE_LIMIT_CODES = frozenset({"rate_limit_exceeded", "too_many_requests", "insufficient_capacity"})
_TRANSIENT_CODES = frozenset(
    {"server_error", "internal_error", "overloaded", "service_unavailable", "timeout", "vector_store_timeout"}
)


# -- errors ----------------------------------------------------------------------------------------


def _failure(code: str | None, message: str | None, provider: str) -> ProviderError:
    """The error for a failure the API reports inside a 200 answer (an `error` event, a failed response)."""
    text = f"{code}: {message or 'the response failed'}" if code else message or "the response failed"
    if code in _RATE_LIMIT_CODES:
        return RateLimitError(text, provider=provider)
    return ProviderError(text, provider=provider, retryable=code in _TRANSIENT_CODES)


def stream_failure(error: Any, provider: str) -> ProviderError:
    """The error of a stream event whose data has an ``error``, which the SDK raises as a bare
    `APIError` (code and message read from it as the SDK reads them): the native transport's twin
    of the adapter's `_error` for that exception."""
    message = error.get("message") if isinstance(error, Mapping) else None
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    code = error.get("code") if isinstance(error, dict) else None
    return _failure(None if code is None else str(code), message, provider)


# -- events out ------------------------------------------------------------------------------------


def _usage(usage: Any, field: Field) -> Usage | None:
    if usage is None:
        return None
    # Compatible servers may leave out the details objects; the SDK does not validate events.
    cached = field(field(usage, "input_tokens_details"), "cached_tokens")
    reasoning = field(field(usage, "output_tokens_details"), "reasoning_tokens")
    return Usage(
        input_tokens=field(usage, "input_tokens") or 0,
        output_tokens=field(usage, "output_tokens") or 0,
        total_tokens=field(usage, "total_tokens") or 0,
        cached_tokens=cached or 0,
        reasoning_tokens=reasoning or 0,
    )


def response_failure(response: Any, provider: str, field: Field = sdk_field) -> ProviderError:
    """The error of a response whose ``status`` is ``failed`` (its ``error`` says why)."""
    error = field(response, "error")
    return _failure(field(error, "code"), field(error, "message"), provider)


@dataclass
class _Call:
    call_id: str
    name: str
    streamed: bool = False  # argument fragments were emitted; the whole `arguments` must not repeat them


class ResponsesMapper:
    """The state of one stream (or one whole response) while its events become Chunks.

    `field` reads an event's fields: `sdk_field` for the SDK's objects, `dict_field` for the native
    transport's decoded JSON; the mapping is the same either way.
    """

    def __init__(self, provider: str, model: str, field: Field = sdk_field) -> None:
        self.provider = provider
        self.field = field
        self.meta: dict[str, Any] = {"provider": provider, "model": model}
        self.calls: dict[int, _Call] = {}  # by output_index
        self.summary_parts: set[tuple[int, int]] = set()
        self.finished = False

    def describe(self, response: Any) -> None:
        field = self.field
        self.meta = {
            "provider": self.provider,
            "model": field(response, "model"),
            "response_id": field(response, "id"),
        }

    def chunk(self, kind: ChunkType, data: str, index: Any, raw: Any) -> Chunk:
        # The SDK does not validate events: only a str delta and an int index skip validation.
        if type(data) is str and type(index) is int:
            return delta_chunk(kind, data, index, self.meta, raw)
        return Chunk(type=kind, data=data, index=index, metadata=self.meta, raw_response=raw)

    def tool_chunk(self, call: _Call, data: str, index: int, raw: Any) -> Chunk:
        return Chunk(
            type="tool_call",
            data=data,
            index=index,
            tool_call_id=call.call_id,
            tool_name=call.name,
            metadata=self.meta,
            raw_response=raw,
        )

    def whole_call(self, item: Any, index: int, raw: Any) -> Iterator[Chunk]:
        """A function call whose arguments arrived only whole (no delta events), as one chunk."""
        field = self.field
        call = self.calls.setdefault(index, _Call(field(item, "call_id"), field(item, "name")))
        if not call.streamed:
            call.streamed = True
            yield self.tool_chunk(call, field(item, "arguments") or "", index, raw)

    def handle(self, event: Any) -> Iterator[Chunk]:
        """The chunks of one streamed event (text deltas take the shorter way in the adapters' loops)."""
        field = self.field
        kind = field(event, "type")
        if kind in ("response.created", "response.in_progress"):
            self.describe(field(event, "response"))
        elif kind == "response.output_text.delta":
            delta = field(event, "delta")
            if delta:
                yield self.chunk("text", delta, field(event, "output_index"), event)
        elif kind == "response.refusal.delta":
            delta = field(event, "delta")
            if delta:
                yield self.chunk("refusal", delta, field(event, "output_index"), event)
        elif kind == "response.reasoning_text.delta":
            delta = field(event, "delta")
            if delta:
                yield self.chunk("reasoning", delta, field(event, "output_index"), event)
        elif kind == "response.reasoning_summary_text.delta":
            delta = field(event, "delta")
            if delta:
                output_index, summary_index = field(event, "output_index"), field(event, "summary_index")
                part = (output_index, summary_index)
                # Summary parts are separate paragraphs; without a break they would run together.
                joiner = "\n\n" if part not in self.summary_parts and summary_index > 0 else ""
                self.summary_parts.add(part)
                yield self.chunk("reasoning", joiner + delta, output_index, event)
        elif kind == "response.output_item.added":
            item = field(event, "item")
            if field(item, "type") == "function_call":
                self.calls[field(event, "output_index")] = _Call(field(item, "call_id"), field(item, "name"))
        elif kind == "response.function_call_arguments.delta":
            delta = field(event, "delta")
            if delta:
                index = field(event, "output_index")
                call = self.calls.get(index)
                if call is not None:  # else unnamed: the whole arguments come with output_item.done
                    call.streamed = True
                    yield self.tool_chunk(call, delta, index, event)
        elif kind == "response.output_item.done":
            item = field(event, "item")
            if field(item, "type") == "function_call":
                # Also the whole arguments of a call that streamed none (`.arguments.done` repeats them).
                yield from self.whole_call(item, field(event, "output_index"), event)
        elif kind in ("response.completed", "response.incomplete"):
            yield from self.finish(field(event, "response"), event)
        elif kind == "response.failed":
            raise interrupted(response_failure(field(event, "response"), self.provider, field))
        elif kind == "error":
            raise interrupted(_failure(field(event, "code"), field(event, "message"), self.provider))

    def finish(self, response: Any, raw: Any) -> Iterator[Chunk]:
        """The usage chunk (when reported), then the one finish chunk."""
        field = self.field
        self.describe(response)
        self.finished = True
        usage = _usage(field(response, "usage"), field)
        if usage is not None:
            yield Chunk(type="usage", usage=usage, metadata=self.meta, raw_response=raw)
        status = field(response, "status")
        native: dict[str, Any] = {"status": status}
        reason: FinishReason
        if status == "incomplete":
            cause = field(field(response, "incomplete_details"), "reason")
            native["incomplete_reason"] = cause
            # Every other cause (max_output_tokens, max_messages) is a limit cutting the answer short.
            reason = "content_filter" if cause == "content_filter" else "length"
        else:
            made_call = self.calls or any(
                field(item, "type") == "function_call" for item in field(response, "output") or ()
            )
            reason = "tool_calls" if made_call else "stop"
        yield Chunk(type="finish", finish_reason=reason, metadata=self.meta | native, raw_response=raw)

    def whole(self, response: Any) -> list[Chunk]:
        """A non-streamed Response as the chunk sequence a stream of it would give, one chunk per part."""
        field = self.field
        self.describe(response)
        chunks: list[Chunk] = []
        for index, item in enumerate(field(response, "output") or ()):
            kind = field(item, "type")
            if kind == "message":
                for part in field(item, "content") or ():
                    part_type = field(part, "type")
                    if part_type == "output_text":
                        text = field(part, "text")
                        if text:
                            chunks.append(self.chunk("text", text, index, response))
                    elif part_type == "refusal":
                        refusal = field(part, "refusal")
                        if refusal:
                            chunks.append(self.chunk("refusal", refusal, index, response))
            elif kind == "reasoning":
                parts = [*(field(item, "summary") or ()), *(field(item, "content") or ())]
                texts = [text for text in (field(part, "text") for part in parts) if text]
                if texts:
                    chunks.append(self.chunk("reasoning", "\n\n".join(texts), index, response))
            elif kind == "function_call":
                chunks.extend(self.whole_call(item, index, response))
        return chunks + list(self.finish(response, response))


# -- the adapter -----------------------------------------------------------------------------------


class OpenAIResponsesProvider(OpenAIClientProvider):
    """OpenAI's Responses API: ``AsyncOpenAI().responses.create(stream=True, ...)``.

    Use ``iModel(provider="openai", endpoint="responses", model=...)``; the key and the client
    options are those of the Chat Completions adapter (see `OpenAIClientProvider`). System and
    developer messages become ``instructions``; the rest become ``input`` items (messages,
    ``function_call`` and ``function_call_output``).
    ``max_tokens`` is sent as ``max_output_tokens`` (no default: the model's own limit applies);
    ``stop`` and ``seed`` do not exist in this API and raise `ConfigurationError`; function tools are
    sent with ``strict: false`` unless a tool sets ``strict``. Other keywords (``reasoning={"effort":
    "low"}``, ``include=[...]``, ``store=False``) pass through; ones the SDK does not know go in the
    request body as given. Reasoning summaries stream as ``reasoning`` chunks when the request asks for
    them (``reasoning={"summary": "auto"}``). The finish chunk's metadata holds the response
    ``status`` and, when incomplete, the ``incomplete_reason``. ``response_format`` (a model class,
    a JSON schema, or a response format dict) becomes ``text={"format": {"type": "json_schema",
    "name", "schema", "strict"}}``, strict on the same terms as Chat Completions.
    """

    endpoints: ClassVar[tuple[str, ...]] = ("responses",)
    # The SDK decodes each SSE line as strict UTF-8 outside its own error wrapping: bytes that are
    # not UTF-8 are a malformed event, as they are to the native transport's JSON decoder.
    malformed_errors: ClassVar[tuple[type[BaseException], ...]] = (json.JSONDecodeError, UnicodeDecodeError)
    native: ClassVar[str | None] = (
        "lionflow.services.providers._native_responses:NativeOpenAIResponsesProvider"
    )

    def _error(self, error: BaseException, phase: TimeoutPhase) -> ProviderError:
        """The SDK's own timeout is a `ProviderTimeout` of `phase`."""
        if not isinstance(error, openai.APIError):
            return transport_error(error, phase, provider=self.name)
        if isinstance(error, openai.APITimeoutError):
            return sdk_timeout(error, phase, provider=self.name)
        if isinstance(error, openai.APIConnectionError):
            return ProviderConnectionError(f"connection failed: {error.message}", provider=self.name)
        if isinstance(error, openai.APIStatusError):
            body = error.body
            message = body.get("message") if isinstance(body, Mapping) else None
            return status_error(
                error.status_code,
                message if isinstance(message, str) else error.message,
                provider=self.name,
                headers=error.response.headers,
            )
        # The SDK raises a bare APIError for an `error` event whose fields are nested under "error".
        return _failure(error.code, error.message, self.name)

    async def open(self, request: ModelRequest) -> ChunkStream:
        create: Any = self._client.responses.create
        with self._map_errors():
            result = await create(stream=request.stream, **request_arguments(request))
        mapper = ResponsesMapper(self.name, request.model)
        if not request.stream:
            if isinstance(result, str):
                # The SDK hands back a body that is neither JSON nor labelled JSON as its text.
                raise malformed(ValueError(f"a body that is not JSON: {result[:200]!r}"), self.name)
            if result.status == "failed":
                raise response_failure(result, self.name)
            return ChunkStream(listed(mapper.whole(result)))
        return ChunkStream(self._events(result, mapper), close=result.close)

    async def _events(self, stream: Any, mapper: ResponsesMapper) -> AsyncIterator[Chunk]:
        phase: TimeoutPhase = "first_chunk"  # until a chunk went out; then "idle"
        while not mapper.finished:
            with self._map_errors(phase):
                try:
                    event = await stream.__anext__()
                except StopAsyncIteration:
                    break
            if getattr(event, "type", None) == "response.output_text.delta":
                # nearly every event: a text delta, mapped here without a generator per event
                if event.delta:
                    phase = "idle"
                    yield mapper.chunk("text", event.delta, event.output_index, event)
                continue
            for chunk in mapper.handle(event):
                phase = "idle"
                yield chunk
        if mapper.finished:
            # After the terminal event the body is read to its end only so that the connection can
            # go back to the pool; nothing more belongs to the answer, and a failure there loses nothing.
            with contextlib.suppress(openai.APIError, *self.malformed_errors):
                async for _ in stream:
                    pass
        if not mapper.finished:
            # Every Responses stream ends with a terminal event; without one the answer was cut off.
            raise StreamInterrupted(
                "the stream ended before the response completed", provider=self.name, retryable=True
            )
