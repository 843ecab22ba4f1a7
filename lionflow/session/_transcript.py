"""A stored session as a person reads it: each message as a label and a text, the same wherever it
is shown (`lionflow sessions show` and export, the server's ``GET /v1/sessions/{id}``)."""

from __future__ import annotations

import json

from lionflow.session.messages import (
    ActionRequestContent,
    AssistantResponseContent,
    InstructionContent,
    Message,
    SystemContent,
)
from lionflow.session.stores.base import SessionSnapshot


def model_name(message: Message) -> str | None:
    """``provider:model`` (or the model alone) of an assistant's answer; None for any other message
    or an answer that names no model."""
    content = message.content
    if not isinstance(content, AssistantResponseContent):
        return None
    if content.provider:
        return f"{content.provider}:{content.model}"
    return content.model or None


def label_and_text(message: Message) -> tuple[str, str]:
    """A message as (a label, its text): ``("assistant (openai:gpt-4o, INCOMPLETE)", "Hel")``."""
    content = message.content
    if isinstance(content, SystemContent):
        return "system", content.system
    if isinstance(content, InstructionContent):
        return "user", content.chat_msg()["content"]
    if isinstance(content, AssistantResponseContent):
        notes = [model_name(message) or ""]
        if content.incomplete:
            notes.append("INCOMPLETE")
        label = "assistant" + (f" ({', '.join(note for note in notes if note)})" if any(notes) else "")
        return label, content.assistant_response
    if isinstance(content, ActionRequestContent):
        return "tool call", f"{content.function}({json.dumps(content.arguments, ensure_ascii=False)})"
    # what is left is a tool's result
    shown = (
        f"Error: {content.error}" if content.error is not None else json.dumps(content.output, default=str)
    )
    return f"tool result ({content.function or content.call_id})", shown


def branch_messages(snapshot: SessionSnapshot) -> list[tuple[str, list[Message]]]:
    """Each branch of `snapshot` by name, with its messages in order."""
    messages = {message.id: message for message in snapshot.messages}
    return [(record.name, [messages[item] for item in order]) for record, order in snapshot.branches]
