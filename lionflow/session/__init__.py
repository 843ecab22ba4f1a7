"""Conversation state: messages, sessions and the services registry."""

from lionflow.session.messages import (
    AssistantResponseContent,
    InstructionContent,
    Message,
    MessageContent,
    SystemContent,
    prepare_messages_for_chat,
)
from lionflow.session.services import ServiceRegistry
from lionflow.session.session import Session

__all__ = [
    "AssistantResponseContent",
    "InstructionContent",
    "Message",
    "MessageContent",
    "ServiceRegistry",
    "Session",
    "SystemContent",
    "prepare_messages_for_chat",
]
