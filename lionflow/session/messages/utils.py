"""Turning stored messages into provider chat requests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lionflow.session.messages.message import Message

__all__ = ["prepare_messages_for_chat"]


def prepare_messages_for_chat(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """The chat dicts for `messages`, in order, ready for `iModel.invoke(messages=...)`."""
    return [message.chat_msg for message in messages]
