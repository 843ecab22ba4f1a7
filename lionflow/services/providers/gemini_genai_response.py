"""The Gemini adapters' response side: GenerateContentResponses to chunks, for both transports
(`GeminiMapper`, reading the SDK's objects or the decoded wire JSON through a `FieldReader`)."""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Callable
from typing import Any

from google.genai import types

from lionflow.services.chunk import Chunk, ChunkType, FinishReason, Usage, delta_chunk

_FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(
        [
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
            "MODEL_ARMOR",
        ],
        "content_filter",
    ),
}

# -- reading a response --------------------------------------------------------------------------------------


class FieldReader:
    """How `GeminiMapper` reads a GenerateContentResponse: the SDK's objects by attribute (snake_case
    names, enums, bytes), or the decoded wire JSON by key (camelCase names, strings, base64), so
    that one mapping serves both transports. Each annotated attribute is the name `get` takes for
    the field of that (snake_case) name, computed once."""

    args: str
    block_reason: str
    cached_content_token_count: str
    candidates: str
    candidates_token_count: str
    content: str
    finish_reason: str
    function_call: str
    id: str
    model_version: str
    name: str
    parts: str
    prompt_feedback: str
    prompt_token_count: str
    response_id: str
    text: str
    thought: str
    thought_signature: str
    thoughts_token_count: str
    total_token_count: str
    usage_metadata: str

    def __init__(
        self,
        get: Callable[[Any, str], Any],
        rename: Callable[[str], str],
        *,
        enum_name: Callable[[type[enum.Enum], Any], str],
        signature: Callable[[Any], str],
    ) -> None:
        self.get = get
        self.enum_name = enum_name  # an enum field's value (FinishReason, BlockedReason) as its name
        self.signature = signature  # a thought signature as standard base64
        for field in FieldReader.__annotations__:  # the names, annotated above
            setattr(self, field, rename(field))


def _sdk_signature(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


SDK_FIELDS = FieldReader(
    getattr, str, enum_name=lambda _kind, value: str(value.name), signature=_sdk_signature
)
"""Reads the SDK's objects."""


def _usage(counts: Any, fields: FieldReader) -> Usage:
    # Gemini counts thoughts apart from candidates; lionflow's output_tokens includes reasoning.
    get = fields.get
    thoughts = get(counts, fields.thoughts_token_count) or 0
    return Usage(
        input_tokens=get(counts, fields.prompt_token_count) or 0,
        output_tokens=(get(counts, fields.candidates_token_count) or 0) + thoughts,
        total_tokens=get(counts, fields.total_token_count) or 0,
        reasoning_tokens=thoughts,
        cached_tokens=get(counts, fields.cached_content_token_count) or 0,
    )


class GeminiMapper:
    """Turns the GenerateContentResponses of one call into chunks, remembering what ends it; reads
    them through `fields` (the SDK's objects, or the decoded JSON of the native transport)."""

    def __init__(self, provider: str, model: str, fields: FieldReader = SDK_FIELDS) -> None:
        self.provider = provider
        self.model = model
        self.fields = fields
        self.meta: dict[str, Any] | None = None
        self.calls = 0  # function calls seen: the index of the next one
        self.counts: Any = None  # usage metadata
        self.finish: Any = None  # a FinishReason
        self.blocked: Any = None  # a BlockedReason
        self.last: Any = None

    def feed(self, event: Any) -> list[Chunk]:
        fields = self.fields
        get = fields.get
        self.last = event
        if self.meta is None:
            self.meta = {"provider": self.provider, "model": get(event, fields.model_version) or self.model}
            response_id = get(event, fields.response_id)
            if response_id:
                self.meta["response_id"] = response_id
        counts = get(event, fields.usage_metadata)
        if counts is not None:  # running totals: the latest is the whole call's
            self.counts = counts
        feedback = get(event, fields.prompt_feedback)
        if feedback is not None:
            blocked = get(feedback, fields.block_reason)
            if blocked is not None:
                self.blocked = blocked
        candidates = get(event, fields.candidates)
        if not candidates:
            return []
        candidate = candidates[0]
        finish = get(candidate, fields.finish_reason)
        if finish is not None:
            self.finish = finish
        content = get(candidate, fields.content)
        parts = get(content, fields.parts) if content is not None else None
        return [chunk for part in parts or () if (chunk := self._part(part, event)) is not None]

    def _part(self, part: Any, event: Any) -> Chunk | None:
        fields = self.fields
        get = fields.get
        meta = self.meta or {}
        call = get(part, fields.function_call)
        if call is not None:  # Gemini sends each call whole, never in fragments
            index = self.calls
            self.calls += 1
            signature = get(part, fields.thought_signature)
            if signature:
                meta = meta | {"thought_signature": fields.signature(signature)}
            return Chunk(
                type="tool_call",
                data=json.dumps(get(call, fields.args) or {}, ensure_ascii=False),
                index=index,
                tool_call_id=get(call, fields.id) or f"call_{index}",
                tool_name=get(call, fields.name) or "",
                metadata=meta,
                raw_response=event,
            )
        text = get(part, fields.text)
        if text:  # the SDK validated the response: `text` is a str
            kind: ChunkType = "reasoning" if get(part, fields.thought) else "text"
            return delta_chunk(kind, text, 0, meta, event)
        return None

    @property
    def ended(self) -> bool:
        return self.finish is not None or self.blocked is not None

    def closing(self) -> list[Chunk]:
        """The usage chunk (the last running totals) and the finish chunk."""
        meta = self.meta or {"provider": self.provider, "model": self.model}
        fields = self.fields
        chunks: list[Chunk] = []
        if self.counts is not None:
            usage = _usage(self.counts, fields)
            chunks.append(Chunk(type="usage", usage=usage, metadata=meta, raw_response=self.last))
        reason: FinishReason
        if self.finish is not None:
            native = fields.enum_name(types.FinishReason, self.finish)
            reason = _FINISH_REASONS.get(native, "stop")
            if reason == "stop" and native == "STOP" and self.calls:
                reason = "tool_calls"
            finish_meta = meta | {"finishReason": native}
        else:  # no candidate at all: the prompt itself was blocked
            reason = "content_filter"
            blocked = (
                fields.enum_name(types.BlockedReason, self.blocked) if self.blocked is not None else None
            )
            finish_meta = meta | {"blockReason": blocked}
        chunks.append(
            Chunk(type="finish", finish_reason=reason, metadata=finish_meta, raw_response=self.last)
        )
        return chunks
