"""`SQLiteStore`: sessions in an embedded SQLite database, the default store.

One thread per store owns the connection and runs every job in submission order, so the event
loop never waits on disk and writes from many tasks cannot interleave. Each `StoreWrite` is one
transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``): a process killed at any moment leaves every
committed write intact and no partial one. The database runs in WAL mode; ``synchronous="full"``
(the default) makes each commit survive power loss, ``"normal"`` only a crash of the process.

Many stores (and processes) may share one file: SQLite serializes their writers, and each waits up
to `busy_timeout` seconds for its turn. The schema version is SQLite's ``user_version``; opening a
database applies the migrations it lacks, and refuses one written by a newer lionflow.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from queue import SimpleQueue
from types import TracebackType
from typing import Any, Literal, TypeVar

from lionflow.errors import ConfigurationError, StoreClosed
from lionflow.session.messages import Message
from lionflow.session.stores.base import BranchRecord, SessionInfo, SessionSnapshot, SessionStore, StoreWrite

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "StoreClosed"]

T = TypeVar("T")

# Each entry upgrades the schema from the version before it; index 0 creates version 1.
_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE messages (
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            role TEXT NOT NULL,
            kind TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (session_id, id)
        )""",
        """CREATE TABLE branches (
            id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            UNIQUE (session_id, name)
        )""",
        """CREATE TABLE branch_items (
            branch_id TEXT NOT NULL REFERENCES branches(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            message_id TEXT NOT NULL,
            PRIMARY KEY (branch_id, position)
        )""",
        "CREATE INDEX branches_by_session ON branches(session_id)",
    ],
]
SCHEMA_VERSION = len(_MIGRATIONS)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class _Worker:
    """The thread that owns the connection. Kept apart from the store so that atexit and the
    thread hold no reference to the store itself."""

    def __init__(self, path: str, synchronous: str, busy_timeout: float) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.jobs: SimpleQueue[
            tuple[Callable[[sqlite3.Connection], Any], concurrent.futures.Future[Any]] | None
        ]
        self.jobs = SimpleQueue()
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.thread = threading.Thread(
            target=self._run, name=f"lionflow-sqlite:{os.path.basename(path)}", daemon=True
        )
        self.thread.start()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
        try:
            self._enter_wal(connection)
            connection.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            connection.execute("PRAGMA foreign_keys=ON")
            # Read the version under the write lock: two stores opening one new file at once must
            # not both see version 0 and both create the tables.
            connection.execute("BEGIN IMMEDIATE")
            try:
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise ConfigurationError(
                        f"{self.path} has schema version {version}, newer than this lionflow's "
                        f"{SCHEMA_VERSION}: upgrade lionflow to open it"
                    )
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[target - 1]:
                        connection.execute(statement)
                    connection.execute(f"PRAGMA user_version={target}")
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        except BaseException:
            connection.close()
            raise
        return connection

    def _enter_wal(self, connection: sqlite3.Connection) -> None:
        # Two stores opening one new file at once: the second's switch to WAL can fail with
        # "database is locked" straight away, without SQLite's busy wait. Wait for it here.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _run(self) -> None:
        try:
            connection = self._connect()
        except BaseException as exc:
            self.ready.set_exception(exc)
            # Every job, queued already or later, gets the error rather than waiting forever.
            while (job := self.jobs.get()) is not None:
                if job[1].set_running_or_notify_cancel():
                    job[1].set_exception(exc)
            return
        self.ready.set_result(None)
        try:
            while (job := self.jobs.get()) is not None:
                work, future = job
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(work(connection))
                    except BaseException as exc:
                        future.set_exception(exc)
                # Drop the finished job now: waiting for the next one must not keep its future,
                # and through its callbacks the session and the store, alive.
                del job, work, future
        finally:
            connection.close()

    def stop(self) -> None:
        self.jobs.put(None)
        self.thread.join()


def _stop_at_exit(worker_ref: weakref.ref[_Worker]) -> None:
    worker = worker_ref()
    if worker is not None and worker.thread.is_alive():
        worker.stop()  # writes already queued complete before the interpreter goes


class SQLiteStore(SessionStore):
    """Sessions in an SQLite file (see the module docstring).

    ::

        async with SQLiteStore("chat.db") as store:
            session = Session(store=store)
            ...
            again = await Session.load(store, session.id)
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "lionflow.db",
        *,
        synchronous: Literal["full", "normal"] = "full",
        busy_timeout: float = 30.0,
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ConfigurationError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        self.path = os.fspath(path)
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._worker: _Worker | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> concurrent.futures.Future[T]:
        with self._lock:
            if self._closed:
                raise StoreClosed(f"{self!r} is closed")
            if self._worker is None:
                self._worker = _Worker(self.path, self.synchronous, self.busy_timeout)
                atexit.register(_stop_at_exit, weakref.ref(self._worker))
                # dropped without aclose(): queued writes finish, then the thread ends
                weakref.finalize(self, self._worker.jobs.put, None)
            worker = self._worker
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        worker.jobs.put((work, future))
        return future

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.wrap_future(self._call(work))

    # -- writes ----------------------------------------------------------------------------------

    def submit(self, write: StoreWrite) -> concurrent.futures.Future[None]:
        return self._call(lambda connection: _write(connection, write))

    # -- reads and maintenance -------------------------------------------------------------------

    async def load_session(self, session_id: str) -> SessionSnapshot | None:
        return await self._run(lambda connection: _load(connection, session_id))

    async def list_sessions(self) -> list[SessionInfo]:
        return await self._run(_list)

    async def delete_session(self, session_id: str) -> bool:
        return await self._run(lambda connection: _delete(connection, session_id))

    async def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` for a sound database."""
        return await self._run(
            lambda connection: str(connection.execute("PRAGMA integrity_check").fetchone()[0])
        )

    async def aclose(self) -> None:
        """Finish the queued writes, then close the connection. Safe to call more than once."""
        with self._lock:
            self._closed = True
            worker, self._worker = self._worker, None
        if worker is not None:
            await asyncio.to_thread(worker.stop)

    async def __aenter__(self) -> SQLiteStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


# -- the SQL, run on the store's thread -------------------------------------------------------------


def _write(connection: sqlite3.Connection, write: StoreWrite) -> None:
    now = _now()
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            "INSERT INTO sessions (id, created_at, updated_at, metadata) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at, metadata = excluded.metadata",
            (write.session_id, write.session_created_at.isoformat(), now, json.dumps(write.session_metadata)),
        )
        connection.executemany(
            "INSERT INTO branches (id, session_id, name, created_at, metadata) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET name = excluded.name, metadata = excluded.metadata",
            [
                (b.id, write.session_id, b.name, b.created_at.isoformat(), json.dumps(b.metadata))
                for b in write.branches
            ],
        )
        connection.executemany(
            "INSERT OR IGNORE INTO messages (session_id, id, created_at, role, kind, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    write.session_id,
                    m.id,
                    m.created_at.isoformat(),
                    m.role,
                    m.content.kind,
                    m.model_dump_json(),
                )
                for m in write.messages
            ],
        )
        connection.executemany(
            "INSERT OR REPLACE INTO branch_items (branch_id, position, message_id) VALUES (?, ?, ?)",
            write.placements,
        )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _load(connection: sqlite3.Connection, session_id: str) -> SessionSnapshot | None:
    row = connection.execute(
        "SELECT created_at, metadata FROM sessions WHERE id = ?", (session_id,)
    ).fetchone()
    if row is None:
        return None
    messages = [
        Message.model_validate_json(data)
        for (data,) in connection.execute(
            "SELECT data FROM messages WHERE session_id = ? ORDER BY rowid", (session_id,)
        )
    ]
    branches: list[tuple[BranchRecord, list[str]]] = []
    for branch_id, name, created_at, metadata in connection.execute(
        "SELECT id, name, created_at, metadata FROM branches WHERE session_id = ? ORDER BY rowid",
        (session_id,),
    ).fetchall():
        order = [
            message_id
            for (message_id,) in connection.execute(
                "SELECT message_id FROM branch_items WHERE branch_id = ? ORDER BY position", (branch_id,)
            )
        ]
        record = BranchRecord(branch_id, name, datetime.fromisoformat(created_at), json.loads(metadata))
        branches.append((record, order))
    return SessionSnapshot(
        id=session_id,
        created_at=datetime.fromisoformat(row[0]),
        metadata=json.loads(row[1]),
        messages=messages,
        branches=branches,
    )


def _list(connection: sqlite3.Connection) -> list[SessionInfo]:
    rows = connection.execute(
        "SELECT s.id, s.created_at, s.updated_at, "
        "(SELECT count(*) FROM messages m WHERE m.session_id = s.id) "
        "FROM sessions s ORDER BY s.updated_at DESC"
    ).fetchall()
    result = []
    for session_id, created_at, updated_at, count in rows:
        names = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM branches WHERE session_id = ? ORDER BY rowid", (session_id,)
            )
        ]
        result.append(
            SessionInfo(
                session_id,
                datetime.fromisoformat(created_at),
                datetime.fromisoformat(updated_at),
                count,
                names,
            )
        )
    return result


def _delete(connection: sqlite3.Connection, session_id: str) -> bool:
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            "DELETE FROM branch_items WHERE branch_id IN (SELECT id FROM branches WHERE session_id = ?)",
            (session_id,),
        )
        deleted = connection.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return bool(deleted)
