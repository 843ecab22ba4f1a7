"""`Branch`: one line of conversation, an ordered progression of message ids in a session."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lionflow.session.messages import Message

if TYPE_CHECKING:
    from lionflow.session.session import Session

__all__ = ["Branch"]


class Branch:
    """An ordered list of message ids; the messages themselves live once in the session.

    The same message may belong to several branches (a fork shares its history). `order` is the
    ids in order, `messages` the messages, and `chat_messages()` what a model is sent. Create
    branches with `Session.create_branch` or `Session.fork`. `metadata` is a plain dict that is
    stored as JSON with the branch: a value JSON cannot hold raises `ConfigurationError` before the
    next write. In a store, positions are the store's: a branch's order as stored is the order its
    messages were written in, whichever `Session` object wrote them.
    """

    def __init__(
        self,
        session: Session,
        *,
        name: str,
        id: str | None = None,
        created_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        order: list[str] | None = None,
    ) -> None:
        self.session = session
        self._name = name
        self.id = id or uuid.uuid4().hex
        self.created_at = created_at or datetime.now(UTC)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._order: list[str] = list(order or ())

    @property
    def name(self) -> str:
        """The branch's name, unique in its session. Fixed once created: stores and flows refer to it."""
        return self._name

    def __repr__(self) -> str:
        return f"Branch(name={self.name!r}, messages={len(self._order)})"

    def __len__(self) -> int:
        return len(self._order)

    @property
    def order(self) -> tuple[str, ...]:
        """The message ids, oldest first."""
        return tuple(self._order)

    @property
    def messages(self) -> list[Message]:
        """The messages, oldest first."""
        store = self.session.messages
        return [store[message_id] for message_id in self._order]

    @property
    def last(self) -> Message | None:
        """The newest message, or None for an empty branch."""
        return self.session.messages[self._order[-1]] if self._order else None

    def chat_messages(self) -> list[dict[str, Any]]:
        """The branch as provider chat dicts, ready for `iModel.invoke(messages=...)`."""
        return [message.chat_msg for message in self.messages]

    def _append(self, message_id: str) -> None:
        self._order.append(message_id)
