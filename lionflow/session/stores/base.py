"""The store interface: what a Session asks of its persistence, and the records it passes."""

from __future__ import annotations

import concurrent.futures
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lionflow.session.messages import Message

__all__ = ["EXPORT_FORMAT", "BranchRecord", "SessionInfo", "SessionSnapshot", "SessionStore", "StoreWrite"]

EXPORT_FORMAT = "lionflow.session"


@dataclass(frozen=True, slots=True)
class BranchRecord:
    """A branch's identity; its order is written as placements."""

    id: str
    name: str
    created_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoreWrite:
    """One atomic write: everything in it lands together or not at all.

    `placements` are (branch id, position, message id): the message at that place of the branch.
    A message already stored is not written again (the same message may sit in several branches).
    """

    session_id: str
    session_created_at: datetime
    session_metadata: dict[str, Any] = field(default_factory=dict)
    branches: tuple[BranchRecord, ...] = ()
    messages: tuple[Message, ...] = ()
    placements: tuple[tuple[str, int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """A stored session as loaded: its messages in insertion order and its branches' orders."""

    id: str
    created_at: datetime
    metadata: dict[str, Any]
    messages: list[Message]
    branches: list[tuple[BranchRecord, list[str]]]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A line of `list_sessions()`."""

    id: str
    created_at: datetime
    updated_at: datetime
    message_count: int
    branch_names: list[str]


class SessionStore(ABC):
    """Where sessions persist. `SQLiteStore` is the embedded default.

    `submit()` is synchronous and never blocks on I/O: it queues one atomic write and returns a
    future that resolves once the write is durable. Writes apply in submission order. The rest is
    async.
    """

    @abstractmethod
    def submit(self, write: StoreWrite) -> concurrent.futures.Future[None]:
        """Queue `write`; the future resolves when it is durable (or raises what failed)."""

    @abstractmethod
    async def load_session(self, session_id: str) -> SessionSnapshot | None:
        """The stored session, or None if there is none with this id."""

    @abstractmethod
    async def list_sessions(self) -> list[SessionInfo]:
        """Every stored session, most recently updated first."""

    @abstractmethod
    async def delete_session(self, session_id: str) -> bool:
        """Delete a session with its messages and branches; False if there was none."""

    async def export_session(self, session_id: str) -> dict[str, Any]:
        """The session as a JSON-able dict (see `import_session`)."""
        snapshot = await self.load_session(session_id)
        if snapshot is None:
            raise KeyError(f"no session {session_id!r} in this store")
        return export_snapshot(snapshot)

    async def import_session(self, data: dict[str, Any]) -> str:
        """Store a session exported by `export_session` (or `Session.export()`); returns its id."""
        snapshot = import_snapshot(data)
        write = StoreWrite(
            session_id=snapshot.id,
            session_created_at=snapshot.created_at,
            session_metadata=snapshot.metadata,
            branches=tuple(record for record, _ in snapshot.branches),
            messages=tuple(snapshot.messages),
            placements=tuple(
                (record.id, position, message_id)
                for record, order in snapshot.branches
                for position, message_id in enumerate(order)
            ),
        )
        await wait_for(self.submit(write))
        return snapshot.id

    async def check(self) -> None:  # noqa: B027 - optional: stores that open lazily override it
        """Raise `StoreError` if the store cannot be opened or used."""

    async def aclose(self) -> None:  # noqa: B027 - optional: stores holding resources release them
        """Finish pending writes and release resources."""


async def wait_for(future: concurrent.futures.Future[None]) -> None:
    """Await a store future from the event loop without blocking it. Cancelling the waiter leaves
    the write itself alone: it still lands."""
    import asyncio

    await asyncio.shield(asyncio.wrap_future(future))


def export_snapshot(snapshot: SessionSnapshot) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "version": 1,
        "session": {
            "id": snapshot.id,
            "created_at": snapshot.created_at.isoformat(),
            "metadata": snapshot.metadata,
        },
        "messages": [message.model_dump(mode="json") for message in snapshot.messages],
        "branches": [
            {
                "id": record.id,
                "name": record.name,
                "created_at": record.created_at.isoformat(),
                "metadata": record.metadata,
                "order": order,
            }
            for record, order in snapshot.branches
        ],
    }


def import_snapshot(data: dict[str, Any]) -> SessionSnapshot:
    from lionflow.errors import ConfigurationError

    if data.get("format") != EXPORT_FORMAT or data.get("version") != 1:
        raise ConfigurationError(
            f"not a lionflow session export (format {data.get('format')!r}, version {data.get('version')!r})"
        )
    session = data["session"]
    messages = [Message.model_validate(item) for item in data.get("messages", [])]
    known = {message.id for message in messages}
    branches = []
    for item in data.get("branches", []):
        missing = [message_id for message_id in item["order"] if message_id not in known]
        if missing:
            raise ConfigurationError(f"branch {item['name']!r} refers to unknown messages: {missing[:3]}")
        record = BranchRecord(
            id=item["id"],
            name=item["name"],
            created_at=datetime.fromisoformat(item["created_at"]),
            metadata=item.get("metadata") or {},
        )
        branches.append((record, list(item["order"])))
    return SessionSnapshot(
        id=session["id"],
        created_at=datetime.fromisoformat(session["created_at"]),
        metadata=session.get("metadata") or {},
        messages=messages,
        branches=branches,
    )
