"""The store interface: what a Session asks of its persistence, and the records it passes."""

from __future__ import annotations

import concurrent.futures
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pydantic
import pydantic_core

from lionflow._loop import thread_caller
from lionflow.errors import ConfigurationError
from lionflow.session.messages import Message

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
        result: dict[str, Any] = json.loads(encoded)
        # NaN and infinities: pydantic writes them as tokens JSON does not have
        json.dumps(result, allow_nan=False)
    except (pydantic_core.PydanticSerializationError, ValueError) as exc:
        raise ConfigurationError(
            f"{what} must be JSON (str, finite numbers, bools, None, lists, dicts, or what "
            f"pydantic serializes to them, such as datetime): {exc}"
        ) from None
    return result


def metadata_text(metadata: Mapping[str, Any]) -> str:
    """How a store writes metadata already in JSON mode: strict JSON text."""
    return json.dumps(metadata, allow_nan=False, ensure_ascii=False)


def check_name(name: object, *, what: str) -> str:
    """`name` if it is a non-empty string every store can hold: UTF-8 (no lone surrogates) and no
    NUL character (PostgreSQL's text has none)."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{what} must be a non-empty string, not {name!r}")
    if "\x00" in name:
        raise ConfigurationError(f"{what} must not hold a NUL character (at position {name.index(chr(0))})")
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
class BranchWrite:
    """A branch a `StoreWrite` touches: its metadata changed, or it may not be stored yet.

    `order` given: the branch's creating write failed or is still pending. If the store lacks the
    branch, it creates it with `order` as its first positions (the write carries those messages);
    if it has it, `order` is ignored: creation is idempotent, so a pending creation that lands
    first is not repeated. `metadata` None leaves the stored metadata alone ({} for a branch the
    write creates); it is in JSON mode.
    """

    id: str
    name: str
    created_at: datetime
    metadata: dict[str, Any] | None = None
    order: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class StoreWrite:
    """One atomic write: everything in it lands together or not at all.

    `placements` are (branch id, message id) pairs, appended in order: the store gives each the
    position after the branch's last one *as stored*, inside the write's transaction, so two
    writers (two Session objects, two processes) never take the same place and nothing stored is
    ever overwritten. `branches` are those created if absent or whose metadata changed (see
    `BranchWrite`). A message already stored is not written again (the same message may sit in
    several branches); a *different* message under a stored id fails the write with `StoreError`.
    `session_metadata` None leaves the stored session metadata alone ({} for a new session).
    `new_session` refuses (`ConfigurationError`), inside the transaction, a session already
    stored: an import. `turn` is the id of the turn's instruction when the write stores a turn: a
    `StoreError` names it. Metadata is already in JSON mode (see `json_metadata`).
    """

    session_id: str
    session_created_at: datetime
    session_metadata: dict[str, Any] | None = None
    branches: tuple[BranchWrite, ...] = ()
    messages: tuple[Message, ...] = ()
    placements: tuple[tuple[str, str], ...] = ()
    turn: str | None = None
    new_session: bool = False


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
    """A line of `list_sessions()`. `metadata` is the session's (JSON mode), for a name in it."""

    id: str
    created_at: datetime
    updated_at: datetime
    message_count: int
    branch_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Events of a served stream to keep for resuming (see `lionflow.serve`): `events` (whole SSE
    events, as sent) are numbered from `first` on; `ended` says the stream ended with them."""

    stream_id: str
    first: int
    events: tuple[bytes, ...] = ()
    ended: bool = False


@dataclass(frozen=True, slots=True)
class StoredEvents:
    """A served stream's events after the number asked for, and whether it ended."""

    stream_id: str
    events: list[bytes]
    ended: bool


@dataclass(frozen=True, slots=True)
class ServedRecord:
    """What a server answered under an id (a chat completion's, a response's): where the turn is
    stored (`session_id`, `branch`, the answer message `message_id`, None while it runs) and the
    API's object (`body`, JSON mode). Deleted with its session."""

    id: str
    kind: str
    session_id: str
    branch: str
    message_id: str | None
    body: dict[str, Any]
    created_at: datetime


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
        Malformed data raises `ConfigurationError`, and so does a session already in the store
        (checked inside the write, so of two concurrent imports one is refused): importing it
        again would append its turns a second time."""
        snapshot = import_snapshot(data)
        write = StoreWrite(
            session_id=snapshot.id,
            session_created_at=snapshot.created_at,
            session_metadata=snapshot.metadata,
            branches=tuple(
                BranchWrite(record.id, record.name, record.created_at, record.metadata, tuple(order))
                for record, order in snapshot.branches
            ),
            messages=tuple(snapshot.messages),
            new_session=True,
        )
        await wait_for(self.submit(write))
        return snapshot.id

    # -- what a server keeps: its streams' events (for a while) and its answers' ids ------------
    # Optional: a store without them serves no resumable or stored answers (`create_app` says so).

    keeps_served = False

    def submit_events(self, batches: tuple[EventBatch, ...]) -> concurrent.futures.Future[None]:
        """Queue `batches` as one write (after the writes queued before it); the future resolves
        when they are durable."""
        raise ConfigurationError(f"{type(self).__name__} keeps no served streams")

    async def load_events(self, stream_id: str, *, after: int = 0) -> StoredEvents | None:
        """The events of stream `stream_id` numbered above `after`; None for a stream not stored."""
        raise ConfigurationError(f"{type(self).__name__} keeps no served streams")

    async def drop_events(self, *, before: datetime) -> int:
        """Delete the streams whose last event (or end) came before `before`; how many."""
        raise ConfigurationError(f"{type(self).__name__} keeps no served streams")

    def submit_served(self, record: ServedRecord) -> concurrent.futures.Future[None]:
        """Queue `record` (replacing one with its id) as one write."""
        raise ConfigurationError(f"{type(self).__name__} keeps no served answers")

    async def load_served(self, served_id: str) -> ServedRecord | None:
        """The record stored under `served_id`, or None."""
        raise ConfigurationError(f"{type(self).__name__} keeps no served answers")

    async def check(self, *, writable: bool = False) -> None:  # noqa: B027 - stores that open lazily override it
        """Raise `StoreError` if the store cannot be opened (and, with `writable`, written).
        `Session.check_store` awaits it before every turn's request."""

    async def aclose(self) -> None:  # noqa: B027 - optional: stores holding resources release them
        """Finish pending writes and release resources."""


async def wait_for(future: concurrent.futures.Future[T]) -> T:
    """Await a store future from any anyio backend without blocking the event loop, and without a
    thread per waiter: the future's completion wakes an `anyio.Event` in the loop.
    Cancelling the waiter leaves the work itself alone (a write still lands)."""
    if future.done():
        await anyio.lowlevel.checkpoint()
        return future.result()
    call = thread_caller()
    done = anyio.Event()
    future.add_done_callback(lambda _: call(done.set))
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


def import_snapshot(data: object) -> SessionSnapshot:
    """The snapshot in `export_snapshot` data; `ConfigurationError` for anything malformed."""
    if not isinstance(data, Mapping) or data.get("format") != EXPORT_FORMAT or data.get("version") != 1:
        found = (
            (data.get("format"), data.get("version")) if isinstance(data, Mapping) else type(data).__name__
        )
        raise ConfigurationError(f"not a lionflow session export (format, version: {found!r})")
    try:
        return _import_snapshot(data)
    except ConfigurationError:
        raise
    except pydantic.ValidationError as exc:
        # the locations only: the values may be secrets
        where = ", ".join(".".join(map(str, error["loc"])) for error in exc.errors()[:3])
        raise ConfigurationError(f"malformed lionflow session export: invalid message ({where})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise ConfigurationError(f"malformed lionflow session export: {what}") from None


def _import_snapshot(data: Mapping[str, Any]) -> SessionSnapshot:
    session = data["session"]
    messages: dict[str, Message] = {}
    for item in data.get("messages") or []:
        message = Message.model_validate(item)
        if messages.setdefault(message.id, message) != message:
            raise ConfigurationError(
                f"malformed lionflow session export: two messages with id {message.id!r}"
            )
        if message.metadata:
            json_metadata(message.metadata, what=f"metadata of message {message.id}")
    branches = []
    names: set[str] = set()
    ids: set[str] = set()
    for item in data.get("branches") or []:
        name = check_name(item["name"], what="a branch name")
        branch_id = check_name(item["id"], what="a branch id")
        if name in names or branch_id in ids:
            raise ConfigurationError(
                f"malformed lionflow session export: two branches named {name!r} or with id {branch_id!r}"
            )
        names.add(name)
        ids.add(branch_id)
        order = [check_name(message_id, what="a message id") for message_id in item["order"]]
        missing = [message_id for message_id in order if message_id not in messages]
        if missing:
            raise ConfigurationError(f"branch {name!r} refers to unknown messages: {missing[:3]}")
        record = BranchRecord(
            id=branch_id,
            name=name,
            created_at=_timestamp(item["created_at"]),
            metadata=json_metadata(item.get("metadata") or {}, what=f"metadata of branch {name!r}"),
        )
        branches.append((record, order))
    return SessionSnapshot(
        id=check_name(session["id"], what="session id"),
        created_at=_timestamp(session["created_at"]),
        metadata=json_metadata(session.get("metadata") or {}, what="session metadata"),
        messages=list(messages.values()),
        branches=branches,
    )


def _timestamp(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"a timestamp must be an ISO 8601 string, not {type(value).__name__}")
    return datetime.fromisoformat(value)
