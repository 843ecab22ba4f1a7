"""The typed contents of a message. Each knows its role and how it reads in a chat request."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from lionflow.services.chunk import FinishReason, Usage
from lionflow.services.response import Response, ToolCall

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

    def chat_msg(self) -> dict[str, Any]:
        return {"role": "system", "content": self.system}


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

    def chat_msg(self) -> dict[str, Any]:
        parts = [self.instruction]
        if self.context is not None:
            parts.append(f"Context:\n{_render_context(self.context)}")
        if self.guidance:
            parts.append(f"Guidance:\n{self.guidance}")
        return {"role": "user", "content": "\n\n".join(parts)}


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
    structured: Any = None  # the validated response_format object, as JSON

    @property
    def role(self) -> Role:
        return "assistant"

    @classmethod
    def from_response(cls, response: Response) -> AssistantResponseContent:
        parsed = response.parsed
        return cls(
            structured=None if parsed is None else to_jsonable_python(parsed),  # a model, a list, JSON
            assistant_response=response.text,
            reasoning=response.reasoning,
            tool_calls=list(response.tool_calls),
            usage=response.usage,
            finish_reason=response.finish_reason,
            model=response.model,
            provider=response.provider,
            incomplete=response.incomplete,
        )

    def chat_msg(self) -> dict[str, Any]:
        if self.structured is not None and not self.assistant_response:
            # A structured answer that came as a tool call (Anthropic's forced answer tool) is the
            # assistant's answer, not a call to run: replayed as its JSON text, so that the next
            # request has no call that no tool result answers. The call stays in the record.
            text = json.dumps(self.structured, ensure_ascii=False)
            return {"role": "assistant", "content": text}
        message: dict[str, Any] = {"role": "assistant", "content": self.assistant_response}
        # An interrupted turn's tool calls were never run and may be cut off mid-arguments; no tool
        # result can answer them, and every API rejects a call left unanswered. They stay in the record.
        if self.tool_calls and not self.incomplete:
            message["tool_calls"] = [_chat_tool_call(call) for call in self.tool_calls]
        return message


def _chat_tool_call(call: ToolCall) -> dict[str, Any]:
    arguments: str | dict[str, Any] = call.raw_arguments
    if not arguments:
        try:
            arguments = json.dumps(call.arguments, allow_nan=False)
        except (TypeError, ValueError):
            # No JSON form (a date, NaN): the object as given, which a request's parse refuses with a
            # ConfigurationError saying so; the message itself can still be read.
            arguments = call.arguments
    entry: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }
    signature = call.metadata.get("thought_signature")
    if signature:  # Gemini needs its thought signature back with the call (its OpenAI-compatible form)
        entry["extra_content"] = {"google": {"thought_signature": signature}}
    return entry


class ActionRequestContent(BaseModel):
    """A tool (function) call to make: `function` with `arguments`, under `call_id`."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["action_request"] = "action_request"
    function: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    call_id: str

    @property
    def role(self) -> Role:
        return "assistant"

    def chat_msg(self) -> dict[str, Any]:
        call = ToolCall(id=self.call_id, name=self.function, arguments=self.arguments)
        return {"role": "assistant", "content": "", "tool_calls": [_chat_tool_call(call)]}


class ActionResponseContent(BaseModel):
    """The result of a tool call: `output` (any JSON-able value), or `error` when the call failed."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["action_response"] = "action_response"
    call_id: str
    function: str = ""
    output: Any = None
    error: str | None = None

    @property
    def role(self) -> Role:
        return "tool"

    def chat_msg(self) -> dict[str, Any]:
        content = f"Error: {self.error}" if self.error is not None else _render_context(self.output)
        message: dict[str, Any] = {"role": "tool", "tool_call_id": self.call_id, "content": content}
        if self.function:
            message["name"] = self.function
        return message


MessageContent = (
    SystemContent
    | InstructionContent
    | AssistantResponseContent
    | ActionRequestContent
    | ActionResponseContent
)
