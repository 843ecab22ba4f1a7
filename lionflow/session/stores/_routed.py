"""What `SQLiteStore` and `PostgresStore` share: the `SessionStore` methods, each a thin router from
the contract to one function of the store's SQL (`StoreSql`), through the store's write path
(`_call`: queued, run in submission order) or read path (`_read`); the life of the thread that runs
its writes; and the rows and records that their SQL builds alike whatever the dialect."""

from __future__ import annotations

import atexit
import concurrent.futures
import json
import threading
import weakref
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from queue import SimpleQueue
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from lionflow.session.messages import Message
from lionflow.session.stores.base import (
    BranchRecord,
    BranchWrite,
    EventBatch,
    ServedRecord,
    SessionInfo,
    SessionSnapshot,
    SessionStore,
    StoredEvents,
    StoreWrite,
    metadata_text,
    wait_for,
)

C = TypeVar("C")  # the store's connection
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoreSql(Generic[C]):
    """The functions of a store's SQL modules that the contract's methods run, one job each."""

    store_write: Callable[[C, StoreWrite], None]
    load_session: Callable[[C, str], SessionSnapshot | None]
    list_sessions: Callable[[C], list[SessionInfo]]
    delete_session: Callable[[C, str], bool]
    append_events: Callable[[C, tuple[EventBatch, ...]], None]
    load_events: Callable[[C, str, int], StoredEvents | None]
    drop_events: Callable[[C, datetime], int]
    store_served: Callable[[C, ServedRecord], None]
    load_served: Callable[[C, str], ServedRecord | None]


class RoutedStore(SessionStore, Generic[C]):
    """A store whose contract methods run its `_sql` on its own connections: writes through
    `_call`, reads through `_read`."""

    _sql: StoreSql[C]
    keeps_served = True

    @abstractmethod
    def _call(
        self, work: Callable[[C], T], action: str, *, session_id: str | None = None, turn: str | None = None
    ) -> concurrent.futures.Future[T]:
        """Queue `work` after every job submitted before it; a failure is a `StoreError` naming
        `action`, the session and the turn."""

    @abstractmethod
    async def _read(self, work: Callable[[C], T], action: str, *, session_id: str | None = None) -> T:
        """Run `work` once the writes submitted before it are done."""

    # -- writes ----------------------------------------------------------------------------------

    def submit(self, write: StoreWrite) -> concurrent.futures.Future[None]:
        if write.turn is not None:
            action = f"store turn {write.turn} of session {write.session_id}"
        else:
            action = f"store session {write.session_id}"
        store_write = self._sql.store_write
        return self._call(
            lambda connection: store_write(connection, write),
            action,
            session_id=write.session_id,
            turn=write.turn,
        )

    # -- what a server keeps (see `SessionStore.submit_events`) -----------------------------------

    def submit_events(self, batches: tuple[EventBatch, ...]) -> concurrent.futures.Future[None]:
        append_events = self._sql.append_events
        return self._call(
            lambda connection: append_events(connection, batches), "store a served stream's events"
        )

    async def load_events(self, stream_id: str, *, after: int = 0) -> StoredEvents | None:
        load_events = self._sql.load_events
        return await self._read(
            lambda connection: load_events(connection, stream_id, after), f"load stream {stream_id}"
        )

    async def drop_events(self, *, before: datetime) -> int:
        drop_events = self._sql.drop_events
        return await self._read(lambda connection: drop_events(connection, before), "drop expired streams")

    def submit_served(self, record: ServedRecord) -> concurrent.futures.Future[None]:
        store_served = self._sql.store_served
        return self._call(
            lambda connection: store_served(connection, record),
            f"store answer {record.id}",
            session_id=record.session_id,
        )

    async def load_served(self, served_id: str) -> ServedRecord | None:
        load_served = self._sql.load_served
        return await self._read(
            lambda connection: load_served(connection, served_id), f"load answer {served_id}"
        )

    # -- reads and maintenance -------------------------------------------------------------------

    async def load_session(self, session_id: str) -> SessionSnapshot | None:
        load_session = self._sql.load_session
        return await self._read(
            lambda connection: load_session(connection, session_id),
            f"load session {session_id}",
            session_id=session_id,
        )

    async def list_sessions(self) -> list[SessionInfo]:
        return await self._read(self._sql.list_sessions, "list the sessions")

    async def delete_session(self, session_id: str) -> bool:
        delete_session = self._sql.delete_session
        return await self._read(
            lambda connection: delete_session(connection, session_id),
            f"delete session {session_id}",
            session_id=session_id,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


# -- the thread that runs a store's writes --------------------------------------------------------


class JobThread(Protocol):
    """A store's thread: it runs the `jobs` queued until it takes None, then resolves `stopped`.
    Kept apart from the store so that atexit and the thread hold no reference to the store."""

    @property
    def thread(self) -> threading.Thread: ...

    @property
    def jobs(self) -> SimpleQueue[Any]: ...

    @property
    def stopped(self) -> concurrent.futures.Future[None]: ...


# The store threads still running. One exit hook serves them all: CPython's atexit keeps a slot
# for every registration, even an unregistered one, so a hook per store grows without end.
_LIVE: weakref.WeakSet[JobThread] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_at_exit() -> None:
    with _LIVE_LOCK:
        threads = list(_LIVE)
    for each in threads:
        if each.thread.is_alive():
            each.jobs.put(None)  # writes already queued complete before the interpreter goes
            each.thread.join()


def _dropped(jobs: SimpleQueue[Any]) -> None:
    """A store dropped without `aclose()`: queued writes finish, then the thread ends."""
    jobs.put(None)


def track(store: object, worker: JobThread) -> weakref.finalize[Any, Any]:
    """Stop `worker` at exit, or once `store` is dropped: the finalizer returned, which `finish`
    detaches."""
    with _LIVE_LOCK:
        _LIVE.add(worker)
    return weakref.finalize(store, _dropped, worker.jobs)


async def finish(worker: JobThread | None, release: weakref.finalize[Any, Any] | None) -> None:
    """Let `worker` run the jobs queued, then end its thread (`aclose()`)."""
    if release is not None:
        release.detach()
    if worker is not None:
        with _LIVE_LOCK:
            _LIVE.discard(worker)
        worker.jobs.put(None)
        await wait_for(worker.stopped)


# -- rows and records, the same in both dialects --------------------------------------------------


class Conflict(Exception):
    """The write contradicts what is stored; the job turns it into a `StoreError`."""


def message_row(session_id: str, message: Message, data: str) -> tuple[str, str, str, str, str, str]:
    """A `messages` row: session, id, created_at, role, kind, data."""
    return (session_id, message.id, message.created_at.isoformat(), message.role, message.content.kind, data)


def check_same(stored: str, data: str, message: Message) -> None:
    """A message stored already under `message`'s id: the same one again (a fork carries its
    history) is fine; another one (two writers choosing one id) must not vanish silently."""
    if stored != data and Message.model_validate_json(stored) != message:
        raise Conflict(f"another message with id {message.id!r} is already stored in this session")


def branch_row(session_id: str, branch: BranchWrite) -> tuple[str, str, str, str, str]:
    """A `branches` row: id, session, name, created_at, metadata."""
    return (
        branch.id,
        session_id,
        branch.name,
        branch.created_at.isoformat(),
        metadata_text(branch.metadata or {}),
    )


def branch_record(branch_id: str, name: str, created_at: str, metadata: str) -> BranchRecord:
    return BranchRecord(branch_id, name, datetime.fromisoformat(created_at), json.loads(metadata))


def snapshot(
    session_id: str,
    row: tuple[Any, ...],
    messages: list[Message],
    branches: list[tuple[BranchRecord, list[str]]],
) -> SessionSnapshot:
    """The snapshot of a session whose row (created_at, metadata) was read with its messages and
    branches."""
    return SessionSnapshot(
        id=session_id,
        created_at=datetime.fromisoformat(row[0]),
        metadata=json.loads(row[1]),
        messages=messages,
        branches=branches,
    )


def event_rows(batches: tuple[EventBatch, ...]) -> list[tuple[str, int, bytes]]:
    """The `stream_events` rows of `batches`: stream, number, data."""
    return [
        (batch.stream_id, batch.first + offset, data)
        for batch in batches
        for offset, data in enumerate(batch.events)
    ]


def served_row(record: ServedRecord) -> tuple[str, str, str, str, str | None, str, str]:
    """A `served` row, in the table's column order."""
    return (
        record.id,
        record.kind,
        record.session_id,
        record.branch,
        record.message_id,
        json.dumps(record.body, allow_nan=False, ensure_ascii=False),
        record.created_at.isoformat(),
    )


def served_record(row: tuple[Any, ...] | None) -> ServedRecord | None:
    """The record of a `served` row read in column order, None for no row."""
    if row is None:
        return None
    return ServedRecord(
        row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), datetime.fromisoformat(row[6])
    )
