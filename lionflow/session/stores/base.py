"""The store interface: what a Session asks of its persistence, and the records it passes."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pydantic_core

from lionflow.errors import ConfigurationError
from lionflow.session.messages import Message

__all__ = [
    "EXPORT_FORMAT",
    "BranchRecord",
    "SessionInfo",
    "SessionSnapshot",
    "SessionStore",
    "StoreWrite",
    "check_name",
    "json_metadata",
    "wait_for",
]

EXPORT_FORMAT = "lionflow.session"

T = TypeVar("T")


def json_metadata(value: Mapping[str, Any], *, what: str) -> dict[str, Any]:
    """`value` in JSON mode (what a store holds: datetimes become ISO strings, tuples lists), or
    `ConfigurationError` naming `what` when JSON has no form for it. The message names the type,
    never the value (metadata may hold secrets)."""
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{what} must be a dict, not {type(value).__name__}")
    try:
        encoded = pydantic_core.to_json(value)
    except pydantic_core.PydanticSerializationError as exc:
        raise ConfigurationError(
            f"{what} must be JSON (str, numbers, bools, None, lists, dicts, or what pydantic "
            f"serializes to them, such as datetime): {exc}"
        ) from None
    result: dict[str, Any] = json.loads(encoded)
    return result


def check_name(name: object, *, what: str) -> str:
    """`name` if it is a non-empty string a store can hold (UTF-8: no lone surrogates)."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{what} must be a non-empty string, not {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigurationError(
            f"{what} must be valid Unicode text: it has a lone surrogate at position {exc.start}"
        ) from None
    return name


@dataclass(frozen=True, slots=True)
class BranchRecord:
    """A branch's identity; its order is written as placements. `metadata` is in JSON mode."""

    id: str
    name: str
    created_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoreWrite:
    """One atomic write: everything in it lands together or not at all.

    `placements` are (branch id, message id) pairs, appended in order: the store gives each the
    position after the branch's last one *as stored*, inside the write's transaction, so two
    writers (two Session objects, two processes) never take the same place and nothing stored is
    ever overwritten. `branches` holds the record of every branch the write creates or appends
    to, upserted, so a branch whose creating write failed is created by the next write instead.
    A message already stored is not written again (the same message may sit in several branches).
    `turn` is the id of the turn's instruction when the write stores a turn: a `StoreError` names
    it. Metadata is already in JSON mode (see `json_metadata`).
    """

    session_id: str
    session_created_at: datetime
    session_metadata: dict[str, Any] = field(default_factory=dict)
    branches: tuple[BranchRecord, ...] = ()
    messages: tuple[Message, ...] = ()
    placements: tuple[tuple[str, str], ...] = ()
    turn: str | None = None


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
    async. Every failure is a `StoreError` (naming the session, and the turn for a turn's write)
    whose ``__cause__`` is the database's own error; never a raw driver error.
    """

    @abstractmethod
    def submit(self, write: StoreWrite) -> concurrent.futures.Future[None]:
        """Queue `write`; the future resolves when it is durable (or raises `StoreError`)."""

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
        """Store a session exported by `export_session` (or `Session.export()`); returns its id.
        Each branch's whole order is appended to it. A session already in the store is refused
        (`ConfigurationError`): importing it again would append its turns a second time."""
        snapshot = import_snapshot(data)
        if await self.load_session(snapshot.id) is not None:
            raise ConfigurationError(
                f"session {snapshot.id!r} is already in this store: delete it first to replace it"
            )
        write = StoreWrite(
            session_id=snapshot.id,
            session_created_at=snapshot.created_at,
            session_metadata=json_metadata(snapshot.metadata, what="session metadata"),
            branches=tuple(
                BranchRecord(
                    record.id,
                    record.name,
                    record.created_at,
                    json_metadata(record.metadata, what=f"metadata of branch {record.name!r}"),
                )
                for record, _ in snapshot.branches
            ),
            messages=tuple(snapshot.messages),
            placements=tuple(
                (record.id, message_id) for record, order in snapshot.branches for message_id in order
            ),
        )
        await wait_for(self.submit(write))
        return snapshot.id

    async def check(self, *, writable: bool = False) -> None:  # noqa: B027 - stores that open lazily override it
        """Raise `StoreError` if the store cannot be opened (and, with `writable`, written).
        `Session.check_store` awaits it before every turn's request."""

    async def aclose(self) -> None:  # noqa: B027 - optional: stores holding resources release them
        """Finish pending writes and release resources."""


async def wait_for(future: concurrent.futures.Future[T]) -> T:
    """Await a store future from any anyio backend without blocking the event loop, and without a
    thread per waiter: the future's completion wakes an `anyio.Event` through the loop's token.
    Cancelling the waiter leaves the work itself alone (a write still lands)."""
    if future.done():
        await anyio.lowlevel.checkpoint()
        return future.result()
    token = anyio.lowlevel.current_token()
    done = anyio.Event()

    def wake(_: concurrent.futures.Future[T]) -> None:
        # RunFinishedError: the event loop has ended, so nobody is waiting any more
        with contextlib.suppress(anyio.RunFinishedError):
            token.backend_class.run_sync_soon(done.set, (), token.native_token)

    future.add_done_callback(wake)
    await done.wait()
    return future.result()


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
