"""`Branch`: one line of conversation, an ordered progression of message ids in a session; and the
session's other read-only views: its `MessageStore` and the seed API's `Conversations`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from lionflow.session.messages import Message


class MessageStore(Mapping[str, Message]):
    """The session's messages by id (``session.messages[message_id]``), in insertion order.

    A read-only view: the session adds messages to the dict it hands in here, as turns are recorded.
    """

    def __init__(self, messages: dict[str, Message]) -> None:
        self._messages = messages

    def __getitem__(self, message_id: str) -> Message:
        try:
            return self._messages[message_id]
        except KeyError:
            raise KeyError(f"no message {message_id!r} in this session") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._messages)

    def __len__(self) -> int:
        return len(self._messages)


class Branch:
    """An ordered list of message ids; the messages themselves live once in the session.

    The same message may belong to several branches (a fork shares its history). `order` is the
    ids in order, `messages` the messages, and `chat_messages()` what a model is sent. Create
    branches with `Session.create_branch` or `Session.fork`. `metadata` is a plain dict that is
    stored as JSON with the branch: a value JSON cannot hold raises `ConfigurationError` before the
    next write. In a store, positions are the store's: a branch's order as stored is the order its
    messages were written in, whichever `Session` object wrote them.

    A branch holds what it reads, not its session: `messages` is the session's message store (ids to
    messages) and `order` the list of ids that the session appends to as turns are recorded.
    """

    def __init__(
        self,
        messages: Mapping[str, Message],
        order: list[str],
        *,
        name: str,
        id: str | None = None,
        created_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._store = messages
        self._order = order  # shared with the session, which alone appends to it
        self._name = name
        self.id = id or uuid.uuid4().hex
        self.created_at = created_at or datetime.now(UTC)
        self.metadata: dict[str, Any] = dict(metadata or {})

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
        store = self._store
        return [store[message_id] for message_id in self._order]

    @property
    def last(self) -> Message | None:
        """The newest message, or None for an empty branch."""
        return self._store[self._order[-1]] if self._order else None

    def chat_messages(self) -> list[dict[str, Any]]:
        """The branch as provider chat dicts, ready for `iModel.invoke(messages=...)`."""
        return [message.chat_msg for message in self.messages]


BranchRef = Branch | str
"""A branch, or its name or id."""


class Conversations:
    """The seed API's view of branches as progressions: ``add_item(message, progressions=[...])``.

    It is handed the two things it does, by its session; it holds no session of its own.
    """

    def __init__(
        self,
        add_item: Callable[[Message, Iterable[BranchRef] | None], Message],
        branches: Callable[[], list[Branch]],
    ) -> None:
        self._add_item = add_item
        self._branches = branches

    def add_item(self, item: Message, progressions: Iterable[BranchRef] | None = None) -> Message:
        """Add `item` to the session and append it to each branch in `progressions` (names, ids or
        Branch objects). With a store, the message is written durably in one transaction."""
        return self._add_item(item, progressions)

    @property
    def progressions(self) -> list[Branch]:
        """The session's branches, oldest first."""
        return self._branches()
