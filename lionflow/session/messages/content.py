"""The typed contents of a message. Each knows its role and how it reads in a chat request."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lionflow.services.chunk import FinishReason, Usage
from lionflow.services.response import Response, ToolCall

__all__ = [
    "AssistantResponseContent",
    "InstructionContent",
    "MessageContent",
    "Role",
    "SystemContent",
]

Role = Literal["system", "user", "assistant", "tool"]


def _render_context(context: Any) -> str:
    if isinstance(context, str):
        return context
    try:
        return json.dumps(context, ensure_ascii=False, indent=2, default=str)
    except (TypeError, ValueError):
        return str(context)


class SystemContent(BaseModel):
    """A system prompt."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["system"] = "system"
    system: str

    @property
    def role(self) -> Role:
        return "system"

    def chat_content(self) -> str:
        return self.system


class InstructionContent(BaseModel):
    """What the user asks, with optional `context` (any JSON-able value) and `guidance`.

    In a chat request the three read as one user message::

        <instruction>

        Context:
        <context, as text or indented JSON>

        Guidance:
        <guidance>
    """

    model_config = ConfigDict(frozen=True)
    kind: Literal["instruction"] = "instruction"
    instruction: str
    context: Any = None
    guidance: str | None = None

    @property
    def role(self) -> Role:
        return "user"

    def chat_content(self) -> str:
        parts = [self.instruction]
        if self.context is not None:
            parts.append(f"Context:\n{_render_context(self.context)}")
        if self.guidance:
            parts.append(f"Guidance:\n{self.guidance}")
        return "\n\n".join(parts)


class AssistantResponseContent(BaseModel):
    """What the model answered, with everything a stream carried besides the text.

    `incomplete` marks a turn that ended by an error or a cancellation: the text is what had
    arrived by then.
    """

    model_config = ConfigDict(frozen=True)
    kind: Literal["assistant_response"] = "assistant_response"
    assistant_response: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    model: str | None = None
    provider: str | None = None
    incomplete: bool = False

    @property
    def role(self) -> Role:
        return "assistant"

    @classmethod
    def from_response(cls, response: Response) -> AssistantResponseContent:
        return cls(
            assistant_response=response.text,
            reasoning=response.reasoning,
            tool_calls=list(response.tool_calls),
            usage=response.usage,
            finish_reason=response.finish_reason,
            model=response.model,
            provider=response.provider,
            incomplete=response.incomplete,
        )

    def chat_content(self) -> str:
        return self.assistant_response


MessageContent = SystemContent | InstructionContent | AssistantResponseContent
