"""Provider ``"scripted"``: deterministic replies, offline; and the template for a new adapter.

Users reach it as `lionflow.testing.ScriptedModel` (documented there). Contributors: this is the
smallest complete adapter, annotated (1)-(5) in the order docs/providers.md ("Adding a provider")
walks through. An adapter over an SDK subclasses `SdkProvider` instead of `Provider`, which adds the
API key, the client and `_map_errors()`; see `openai_chat.py` and `openai_chat_request.py` for one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio

from lionflow.errors import ConfigurationError, ScriptedModelExhausted, StreamInterrupted
from lionflow.services.chunk import Chunk, FinishReason, Usage, delta_chunk
from lionflow.services.providers._messages import parse_messages
from lionflow.services.providers.base import ChunkStream, ModelRequest, Provider, ProviderSettings


@dataclass(frozen=True)
class ScriptedReply:
    """One scripted reply with more than text: per-reply reasoning, tool calls or finish reason.

    Fields left as None fall back to the model-wide options.
    """

    text: str = ""
    reasoning: str | None = None
    tool_calls: Sequence[dict[str, Any]] | None = None
    finish_reason: FinishReason | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


Responses = Sequence[str | ScriptedReply] | Callable[[list[dict[str, Any]]], str | ScriptedReply] | None
Delay = float | Callable[[int], float]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(
            _text_of(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return "" if content is None else str(content)


def _default_reply(messages: list[dict[str, Any]]) -> str:
    last = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
    prompt = " ".join(_text_of(last.get("content")).split())
    if len(prompt) > 80:
        prompt = prompt[:77] + "..."
    return f'This is a scripted reply to "{prompt}". It streams in small chunks, exactly like a real model.'


def _pieces(text: str, size: int) -> Iterator[str]:
    return (text[i : i + size] for i in range(0, len(text), size))


def _words(text: str) -> int:
    return len(text.split())


class ScriptedProvider(Provider):
    """The adapter behind provider ``"scripted"``; its options are documented in `lionflow.testing`."""

    # (1) What the registry and iModel read: the provider's name, its default model (most providers
    # have none: model= is then required), and the keywords that configure the adapter rather than
    # the request. Every other iModel keyword becomes a request parameter in `ModelRequest.params`.

    name: ClassVar[str] = "scripted"
    default_model: ClassVar[str | None] = "scripted"
    option_names: ClassVar[frozenset[str]] = frozenset(
        {
            "responses",
            "chunk_size",
            "delay",
            "connect_delay",
            "reasoning",
            "tool_calls",
            "usage",
            "fail_after",
            "fail_on_open",
        }
    )

    # (2) The constructor takes one frozen `ProviderSettings`; the base class has already refused an
    # option not in `option_names`. Check the options' values here, so that a bad one fails when the
    # iModel is built rather than at the first call. An SDK adapter builds its client instead, in
    # `_make_client()` (see `SdkProvider`).
    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        options = settings.options
        chunk_size = options.get("chunk_size", 4)
        fail_after = options.get("fail_after")
        responses = options.get("responses")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigurationError(f"chunk_size must be an integer >= 1, not {chunk_size!r}")
        if fail_after is not None and fail_after < 0:
            raise ConfigurationError(f"fail_after must be >= 0, not {fail_after}")
        if isinstance(responses, str):
            raise ConfigurationError("responses must be a list of texts (or a function), not one string")
        tool_calls = list(options.get("tool_calls") or ())
        for call in tool_calls:
            self._check_tool_call(call)
        self.responses: Responses = responses
        self.chunk_size: int = chunk_size
        self.delay: Delay = options.get("delay", 0.0)
        self.connect_delay: float = options.get("connect_delay", 0.0)
        self.reasoning: str | None = options.get("reasoning")
        self.tool_calls = tool_calls
        self.usage: bool = options.get("usage", True)
        self.fail_after: int | None = fail_after
        self.fail_on_open: list[BaseException] = list(options.get("fail_on_open", ()))
        self.requests: list[ModelRequest] = []
        self.open_streams = 0
        self.max_open_streams = 0
        self._replies_used = 0

    @staticmethod
    def _check_tool_call(call: dict[str, Any]) -> None:
        if not isinstance(call, dict) or not call.get("name"):
            raise ConfigurationError(f"a scripted tool call needs a 'name': {call!r}")

    def _reply(self, messages: list[dict[str, Any]]) -> ScriptedReply:
        if self.responses is None:
            reply: str | ScriptedReply = _default_reply(messages)
        elif callable(self.responses):
            reply = self.responses(messages)
        else:
            if self._replies_used >= len(self.responses):
                raise ScriptedModelExhausted(
                    f"ScriptedModel has {len(self.responses)} responses and was called "
                    f"{self._replies_used + 1} times; give more responses or a function"
                )
            reply = self.responses[self._replies_used]
        self._replies_used += 1
        return ScriptedReply(text=reply) if isinstance(reply, str) else reply

    def _wait(self, position: int) -> float:
        return self.delay(position) if callable(self.delay) else self.delay

    # (4) The response side (an SDK adapter's `<api>.py`): the provider's events as Chunks. Text,
    # reasoning and refusal deltas as they come; every tool-call fragment with its id and name; then
    # one usage chunk with the whole call's totals, and exactly one finish chunk whose finish_reason
    # is normalized (the native value goes in its metadata).
    def _chunks(self, request: ModelRequest, reply: ScriptedReply) -> Iterator[Chunk]:
        """The reply's chunks, built one at a time as they are streamed: a long reply never sits in
        memory as chunks, and the per-chunk cost is paid where a real provider pays it."""
        meta = {"provider": self.name, "model": request.model}
        size = self.chunk_size if request.stream else 1 << 62
        reasoning = reply.reasoning if reply.reasoning is not None else self.reasoning
        if reasoning:
            for piece in _pieces(reasoning, size):
                yield delta_chunk("reasoning", piece, 0, meta, None)
        for piece in _pieces(reply.text, size):
            yield delta_chunk("text", piece, 0, meta, None)
        tool_calls = list(reply.tool_calls) if reply.tool_calls is not None else self.tool_calls
        arguments_text = ""
        for index, call in enumerate(tool_calls):
            arguments = call.get("arguments", {})
            raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
            arguments_text += raw
            call_id = str(call.get("id") or f"call_{len(self.requests)}_{index}")
            for piece in _pieces(raw, size) if raw else [""]:
                yield Chunk(
                    type="tool_call",
                    data=piece,
                    index=index,
                    tool_call_id=call_id,
                    tool_name=call["name"],
                    metadata=meta,
                )
        if self.usage:
            prompt = " ".join(_text_of(m.get("content")) for m in request.messages)
            output = _words(reply.text) + _words(reasoning or "") + _words(arguments_text.replace(",", " "))
            usage = Usage(
                input_tokens=_words(prompt), output_tokens=output, reasoning_tokens=_words(reasoning or "")
            )
            yield Chunk(type="usage", usage=usage, metadata=meta)
        finish = reply.finish_reason or ("tool_calls" if tool_calls else "stop")
        native = {"tool_calls": "tool_calls", "length": "length"}.get(finish, "stop")
        yield Chunk(
            type="finish", finish_reason=finish, metadata=meta | {"finish_reason": native} | reply.metadata
        )

    # (5) Errors: a failure while streaming is a lionflow error (`StreamInterrupted` here). An SDK
    # adapter reads each event inside ``with self._map_errors(phase):`` and yields outside it.
    async def _emit(self, chunks: Iterator[Chunk]) -> AsyncIterator[Chunk]:
        for position, chunk in enumerate(chunks):
            if self.fail_after is not None and position >= self.fail_after:
                raise StreamInterrupted(
                    f"scripted failure after {self.fail_after} chunks", provider=self.name, retryable=True
                )
            wait = self._wait(position)
            if wait > 0:
                await anyio.sleep(wait)
            yield chunk

    # (3) `open()` sends the request and returns once the provider answered, as a `ChunkStream` whose
    # `close` releases what was opened (an SDK stream's ``close``). The request side (an SDK
    # adapter's `<api>_request.py`) reads the messages through `parse_messages`, the one neutral
    # form: what it refuses is refused here too (ConfigurationError, before the request counts as
    # sent), and messages that carry nothing (an empty answer of a stopped turn) are left out.
    async def open(self, request: ModelRequest) -> ChunkStream:
        conversation = parse_messages(request.messages)
        if len(conversation.messages) != len(request.messages):
            kept = [request.messages[message.position] for message in conversation.messages]
            request = dataclasses.replace(request, messages=kept)
        self.requests.append(request)
        if self.connect_delay > 0:
            await anyio.sleep(self.connect_delay)
        if self.fail_on_open:
            raise self.fail_on_open.pop(0)
        reply = self._reply(request.messages)
        for call in reply.tool_calls or ():
            self._check_tool_call(call)
        chunks = self._chunks(request, reply)
        self.open_streams += 1
        self.max_open_streams = max(self.max_open_streams, self.open_streams)

        def release() -> None:
            self.open_streams -= 1

        return ChunkStream(self._emit(chunks), close=release)
