"""`Response`: a call's result assembled from its chunks, and the assembler that builds it."""

from __future__ import annotations

import json
from typing import Any, Generic

from pydantic import BaseModel, ConfigDict, Field

# typing_extensions (a dependency of pydantic) for PEP 696 defaults: a bare `Response` is `Response[Any]`
from typing_extensions import TypeVar

from lionflow.services.chunk import Chunk, FinishReason, Usage

T = TypeVar("T", default=Any)


class ToolCall(BaseModel):
    """A tool call the model made. `arguments` is the parsed JSON object of `raw_arguments`.

    When the arguments are not a JSON object (a cut-off stream, a model error), `arguments` is empty,
    `raw_arguments` keeps the text as received and `arguments_error` says what was wrong.
    `metadata` keeps provider facts a later turn must send back (Gemini's ``thought_signature``).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str = ""
    index: int = 0
    arguments_error: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Response(BaseModel, Generic[T]):
    """The assembled result of one model call.

    `incomplete` is True when the stream ended by an error or a cancellation; the text received up to
    then is kept, and `finish_reason` is ``"error"`` or ``"cancelled"``. `time_to_first_chunk` and
    `duration` are seconds from the start of the call (including any wait for a concurrency slot or
    the rate limiter, and any retries).

    `parsed` is the structured result of a call made with ``response_format=Model``: the strictly
    validated `Model`, and to a type checker the call's response is a ``Response[Model]``. It is
    None on a partial response (``incomplete``) and on one that ended calling tools
    (``finish_reason="tool_calls"``). Without a ``response_format`` at the call the response is a
    ``Response[Any]`` (plain `Response`): ``parsed`` is None, or the value of a JSON schema or of a
    model-wide ``response_format`` the type checker cannot see.
    """

    text: str = ""
    reasoning: str = ""
    refusal: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None
    provider: str | None = None
    chunk_count: int = 0
    time_to_first_chunk: float | None = None
    duration: float = 0.0
    incomplete: bool = False
    error: str | None = None
    # T is the structured type; None until (and unless) a structured reply is validated, see above.
    parsed: T = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return self.text


# Chunk metadata every chunk of a stream repeats; what remains on a tool call's chunks is its own.
_STREAM_KEYS = frozenset({"provider", "model", "response_id"})


class _ToolCallParts:
    __slots__ = ("id", "index", "metadata", "name", "parts")

    def __init__(self, tool_call_id: str, name: str, index: int, metadata: dict[str, Any]) -> None:
        self.id = tool_call_id
        self.name = name
        self.index = index
        self.metadata = {k: v for k, v in metadata.items() if k not in _STREAM_KEYS}
        self.parts: list[str] = []

    def build(self) -> ToolCall:
        raw = "".join(self.parts)
        arguments: dict[str, Any] = {}
        error: str | None = None
        if raw.strip():
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                error = f"arguments are not valid JSON: {exc}"
            else:
                if isinstance(value, dict):
                    arguments = value
                else:
                    error = f"arguments are a JSON {type(value).__name__}, not an object"
        return ToolCall(
            id=self.id,
            name=self.name,
            arguments=arguments,
            raw_arguments=raw,
            index=self.index,
            arguments_error=error,
            metadata=self.metadata,
        )


class ResponseAssembler:
    """Collects chunks as they pass and builds the `Response`. Cheap per chunk: appends only."""

    def __init__(self, *, model: str | None, provider: str | None) -> None:
        self.model = model
        self.provider = provider
        self.chunk_count = 0
        self.usage: Usage | None = None
        self.finish_reason: FinishReason | None = None
        self.metadata: dict[str, Any] = {}
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._refusal: list[str] = []
        self._tool_calls: dict[str, _ToolCallParts] = {}

    @property
    def saw_finish(self) -> bool:
        return self.finish_reason is not None

    def add(self, chunk: Chunk) -> None:
        self.chunk_count += 1
        kind = chunk.type
        if kind == "text":
            self._text.append(chunk.data)
        elif kind == "reasoning":
            self._reasoning.append(chunk.data)
        elif kind == "tool_call":
            key = chunk.tool_call_id or f"index-{chunk.index}"
            parts = self._tool_calls.get(key)
            if parts is None:
                parts = self._tool_calls[key] = _ToolCallParts(
                    key, chunk.tool_name or "", chunk.index, chunk.metadata
                )
            elif not parts.name and chunk.tool_name:
                parts.name = chunk.tool_name
            parts.parts.append(chunk.data)
        elif kind == "refusal":
            self._refusal.append(chunk.data)
        elif kind == "usage":
            self.usage = chunk.usage
            self.metadata.update(chunk.metadata)
        elif kind == "finish":
            self.finish_reason = chunk.finish_reason
            self.metadata.update(chunk.metadata)
        if self.chunk_count == 1:
            self.metadata.update(chunk.metadata)

    @property
    def text(self) -> str:
        return "".join(self._text)

    def build(
        self,
        *,
        duration: float,
        time_to_first_chunk: float | None,
        incomplete: bool = False,
        finish_reason: FinishReason | None = None,
        error: BaseException | None = None,
    ) -> Response:
        """The Response so far. `finish_reason` overrides the stream's (used for error/cancelled)."""
        return Response(
            text="".join(self._text),
            reasoning="".join(self._reasoning),
            refusal="".join(self._refusal),
            tool_calls=[parts.build() for parts in self._tool_calls.values()],
            usage=self.usage,
            finish_reason=finish_reason or self.finish_reason,
            metadata=dict(self.metadata),
            model=self.metadata.get("model") or self.model,
            provider=self.provider,
            chunk_count=self.chunk_count,
            time_to_first_chunk=time_to_first_chunk,
            duration=duration,
            incomplete=incomplete,
            error=None if error is None else (str(error) or type(error).__name__),
        )
