"""`Chunk`: the one streaming delta type every provider is normalized to, and `Usage`."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

ChunkType = Literal["text", "reasoning", "refusal", "tool_call", "usage", "finish"]

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "refusal", "error", "cancelled"]
"""Why a stream ended, normalized across providers.

- ``stop``: the model finished (end of turn, or a stop sequence).
- ``length``: the token limit was reached.
- ``tool_calls``: the model stopped to call tools.
- ``content_filter``: the provider's safety filter stopped or blocked the output.
- ``refusal``: the model refused (Anthropic ``stop_reason="refusal"``).
- ``error``: an error ended the stream (the Response is incomplete).
- ``cancelled``: the caller cancelled or left the stream early (the Response is incomplete).
"""

FINISH_REASONS: tuple[FinishReason, ...] = (
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "refusal",
    "error",
    "cancelled",
)


class Usage(BaseModel):
    """Token counts of one call, with one meaning across providers.

    `input_tokens` counts the whole prompt, cached tokens included (`cached_tokens` is the part read
    from a prompt cache). `output_tokens` counts everything generated, reasoning included
    (`reasoning_tokens` is that part). `total_tokens` is as the provider reports it, by default
    input plus output.
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0

    @model_validator(mode="after")
    def _fill_total(self) -> Self:
        if self.total_tokens == 0 and (self.input_tokens or self.output_tokens):
            object.__setattr__(self, "total_tokens", self.input_tokens + self.output_tokens)
        return self

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )


class Chunk(BaseModel):
    """One streamed delta, the same type for every provider.

    `str(chunk)` is `chunk.data`, so ``print(chunk, end="")`` prints only text. Chunks are frozen;
    `raw_response` keeps the SDK event the chunk came from and is left out of serialization and repr.

    >>> c = Chunk(type="text", data="Hel")
    >>> str(c)
    'Hel'
    """

    model_config = ConfigDict(frozen=True)

    type: ChunkType = "text"
    data: str = ""
    index: int = 0
    tool_call_id: str | None = None
    tool_name: str | None = None
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    raw_response: Any = Field(default=None, exclude=True, repr=False)

    def __str__(self) -> str:
        return self.data

    @property
    def is_content(self) -> bool:
        """True for chunks that carry a delta (text, reasoning, refusal, tool-call arguments)."""
        return self.type in ("text", "reasoning", "refusal", "tool_call")


_new = object.__new__
_set = object.__setattr__
_DELTA_FIELDS_SET = frozenset({"type", "data", "index", "metadata", "raw_response"})


def delta_chunk(kind: ChunkType, data: str, index: int, metadata: dict[str, Any], raw_response: Any) -> Chunk:
    """A text, reasoning or refusal `Chunk`, built without validation, for adapters' per-delta path.

    Validation is most of what building a Chunk costs, and a stream builds one per token; an adapter
    that already holds a valid kind, a `str` delta and an `int` index skips it here. The result is
    equal to ``Chunk(type=kind, data=data, index=index, metadata=metadata, raw_response=...)`` in
    every way (frozen, serializable, equal); `metadata` is copied as validation would.
    """
    chunk = _new(Chunk)
    _set(
        chunk,
        "__dict__",
        {
            "type": kind,
            "data": data,
            "index": index,
            "tool_call_id": None,
            "tool_name": None,
            "usage": None,
            "finish_reason": None,
            "metadata": dict(metadata),
            "raw_response": raw_response,
        },
    )
    _set(chunk, "__pydantic_fields_set__", set(_DELTA_FIELDS_SET))
    _set(chunk, "__pydantic_extra__", None)
    _set(chunk, "__pydantic_private__", None)
    return chunk
