"""`Message`: one entry of a conversation, with an id, a timestamp and typed content; and
`prepare_messages_for_chat`, messages as a provider receives them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lionflow.session.messages.content import MessageContent, Role


def _new_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """One message. `role` follows from the content; `chat_msg` is the dict a provider receives.

    >>> from lionflow import InstructionContent
    >>> Message(content=InstructionContent(instruction="hi")).chat_msg
    {'role': 'user', 'content': 'hi'}
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=_new_id)
    created_at: datetime = Field(default_factory=_now)
    content: MessageContent = Field(discriminator="kind")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def role(self) -> Role:
        return self.content.role

    @property
    def chat_msg(self) -> dict[str, Any]:
        """The provider chat dict of this message (OpenAI chat format, which every adapter takes)."""
        return self.content.chat_msg()


def prepare_messages_for_chat(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """The chat dicts for `messages`, in order, ready for `iModel.invoke(messages=...)`."""
    return [message.chat_msg for message in messages]
