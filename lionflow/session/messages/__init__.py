"""Messages and their typed contents."""

from lionflow.session.messages.content import (
    ActionRequestContent,
    ActionResponseContent,
    AssistantResponseContent,
    InstructionContent,
    MessageContent,
    Role,
    SystemContent,
)
from lionflow.session.messages.message import Message, prepare_messages_for_chat

__all__ = [
    "ActionRequestContent",
    "ActionResponseContent",
    "AssistantResponseContent",
    "InstructionContent",
    "Message",
    "MessageContent",
    "Role",
    "SystemContent",
    "prepare_messages_for_chat",
]
