"""Conversation state: messages, branches, sessions, the services registry and persistence."""

from lionflow.session.branch import Branch, Conversations, MessageStore
from lionflow.session.messages import (
    ActionRequestContent,
    ActionResponseContent,
    AssistantResponseContent,
    InstructionContent,
    Message,
    MessageContent,
    SystemContent,
    prepare_messages_for_chat,
)
from lionflow.session.registry import ServiceRegistry
from lionflow.session.session import Session
from lionflow.session.stores import PostgresStore, SessionStore, SQLiteStore

__all__ = [
    "ActionRequestContent",
    "ActionResponseContent",
    "AssistantResponseContent",
    "Branch",
    "Conversations",
    "InstructionContent",
    "Message",
    "MessageContent",
    "MessageStore",
    "PostgresStore",
    "SQLiteStore",
    "ServiceRegistry",
    "Session",
    "SessionStore",
    "SystemContent",
    "prepare_messages_for_chat",
]
