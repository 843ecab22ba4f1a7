"""`ScriptedModel`: a deterministic, offline model for testing your own flows.

It runs the same service layer as a real provider (retries, timeouts, limits, Response assembly,
cleanup), so a test of your code with a ScriptedModel exercises what production runs, minus the
network. Use it as ``ScriptedModel(...)`` or as ``iModel(provider="scripted", ...)``; both take the
same options::

    from lionflow.testing import ScriptedModel

    model = ScriptedModel(responses=["Hello!", "Goodbye."], chunk_size=2, delay=0.01)
    assert (await model.invoke("hi")).text == "Hello!"
    assert model.requests[0].messages == [{"role": "user", "content": "hi"}]

Options:

- ``responses``: texts (or `ScriptedReply` objects) used in turn, one per call; or a function of the
  chat messages returning one. Without it, the model replies with a sentence quoting the last
  user message. Running out of responses raises `ScriptedModelExhausted`.
- ``chunk_size``: characters per text, reasoning and tool-argument chunk (default 4).
- ``delay``: seconds before each chunk, or a function of the chunk's position (0-based) returning
  seconds, to simulate a slow model or a stall. ``connect_delay``: seconds before the stream opens.
- ``reasoning``: reasoning text streamed before the reply; ``tool_calls``: a list of
  ``{"name": ..., "arguments": {...}, "id": ...}`` streamed after it; ``usage`` (default True):
  end with a usage chunk that counts words as tokens.
- ``fail_after=N``: raise `StreamInterrupted` (retryable, carrying the partial Response) after N
  chunks, on every call.
- ``fail_on_open``: exceptions raised in turn by the first requests before any chunk, such as
  ``[RateLimitError("slow down")]``, to test retries.

Messages are read as every real adapter reads them (`parse_messages`): a malformed one raises
`ConfigurationError` before the request, and one that carries nothing (the empty answer of a turn
stopped before its first chunk) is left out of what the model sees.

Inspect what the model saw with `requests` (every `ModelRequest`, retries included), and stream
cleanup with `open_streams` (streams open now) and `max_open_streams` (the most at once).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio

from lionflow.errors import ConfigurationError, ScriptedModelExhausted, StreamInterrupted
from lionflow.services.chunk import Chunk, FinishReason, Usage, delta_chunk
from lionflow.services.imodel import iModel
from lionflow.services.providers.base import ChunkStream, ModelRequest, Provider
from lionflow.services.providers.messages import parse_messages

__all__ = ["ScriptedModel", "ScriptedModelExhausted", "ScriptedProvider", "ScriptedReply"]


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
    """The adapter behind provider ``"scripted"``; see the module docstring for its options."""

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

    def __init__(
        self,
        *,
        model: str,
        responses: Responses = None,
        chunk_size: int = 4,
        delay: Delay = 0.0,
        connect_delay: float = 0.0,
        reasoning: str | None = None,
        tool_calls: Sequence[dict[str, Any]] | None = None,
        usage: bool = True,
        fail_after: int | None = None,
        fail_on_open: Iterable[BaseException] = (),
        api_key: str | None = None,
        base_url: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(model=model, api_key=api_key, base_url=base_url, endpoint=endpoint)
        if chunk_size < 1:
            raise ConfigurationError(f"chunk_size must be >= 1, not {chunk_size}")
        if fail_after is not None and fail_after < 0:
            raise ConfigurationError(f"fail_after must be >= 0, not {fail_after}")
        if isinstance(responses, str):
            raise ConfigurationError("responses must be a list of texts (or a function), not one string")
        for call in tool_calls or ():
            self._check_tool_call(call)
        self.responses = responses
        self.chunk_size = chunk_size
        self.delay = delay
        self.connect_delay = connect_delay
        self.reasoning = reasoning
        self.tool_calls = list(tool_calls or ())
        self.usage = usage
        self.fail_after = fail_after
        self.fail_on_open = list(fail_on_open)
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

    async def open(self, request: ModelRequest) -> ChunkStream:
        # The conversation is read as every real adapter reads it: what they refuse is refused here
        # (ConfigurationError, before the request counts as sent), and messages that carry nothing
        # (an empty answer of a stopped turn) are left out of what the model sees.
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


class ScriptedModel(iModel):
    """An `iModel` on provider ``"scripted"``: deterministic replies for tests, offline.

    ``ScriptedModel(responses=[...], ...)`` is ``iModel(provider="scripted", responses=[...], ...)``
    with the adapter's bookkeeping (`requests`, `open_streams`, `max_open_streams`) at hand. All
    iModel options (name, timeout, max_retries, max_concurrent, ...) apply.
    """

    adapter: ScriptedProvider

    def __init__(
        self,
        responses: Responses = None,
        *,
        model: str = "scripted",
        chunk_size: int = 4,
        delay: Delay = 0.0,
        connect_delay: float = 0.0,
        reasoning: str | None = None,
        tool_calls: Sequence[dict[str, Any]] | None = None,
        usage: bool = True,
        fail_after: int | None = None,
        fail_on_open: Iterable[BaseException] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            "scripted",
            model,
            responses=responses,
            chunk_size=chunk_size,
            delay=delay,
            connect_delay=connect_delay,
            reasoning=reasoning,
            tool_calls=tool_calls,
            usage=usage,
            fail_after=fail_after,
            fail_on_open=fail_on_open,
            **kwargs,
        )

    @property
    def requests(self) -> list[ModelRequest]:
        """Every request the model received, in order (retries included)."""
        return self.adapter.requests

    @property
    def open_streams(self) -> int:
        """Streams opened and not yet closed: 0 once every call has ended and cleaned up."""
        return self.adapter.open_streams

    @property
    def max_open_streams(self) -> int:
        """The most streams that were open at the same time."""
        return self.adapter.max_open_streams
