"""`SQLiteStore`: sessions in an embedded SQLite database, the default store.

One thread per store owns the connection and runs every job in submission order, so the event
loop never waits on disk and writes from many tasks cannot interleave. Each `StoreWrite` is one
transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``): a process killed at any moment leaves every
committed write intact and no partial one. The database runs in WAL mode; ``synchronous="full"``
(the default) makes each commit survive power loss, ``"normal"`` only a crash of the process.

Many stores (and processes) may share one file: SQLite serializes their writers, and each waits up
to `busy_timeout` seconds for its turn. Positions in a branch are assigned inside the write's
transaction (after the branch's last stored one), so concurrent writers append, never overwrite.
The schema version is SQLite's ``user_version``; opening a database applies the migrations it
lacks, and refuses one written by a newer lionflow.

A database that cannot be written (``read_only=True``, or a file or folder without write
permission) is opened read-only: listing, loading and exporting work, a write raises `StoreError`.
Every sqlite3 error becomes a `StoreError` naming the file, the session and the turn.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import sqlite3
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any, Literal, TypeVar

from lionflow.errors import ConfigurationError, LionflowError, StoreClosed, StoreError
from lionflow.session.stores import _sqlite_served as served
from lionflow.session.stores import _sqlite_sql
from lionflow.session.stores._routed import RoutedStore, StoreSql, finish, track
from lionflow.session.stores._sqlite_sql import MIGRATIONS, SCHEMA_VERSION, roll_back
from lionflow.session.stores.base import wait_for

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Job:
    """A unit of work for the store's thread, and what to name if it fails."""

    work: Callable[[sqlite3.Connection], Any]
    future: concurrent.futures.Future[Any]
    action: str  # "store turn T of session S", "load session S", ...
    session_id: str | None = None
    turn: str | None = None

    def fail(self, path: str, exc: BaseException) -> None:
        """Fail the job with `exc` as a `StoreError` (lionflow's own errors pass as they are)."""
        if isinstance(exc, LionflowError) or not isinstance(exc, Exception):
            error: BaseException = exc
        else:
            error = StoreError(
                f"{path}: could not {self.action}: {exc}", session_id=self.session_id, turn=self.turn
            )
            error.__cause__ = exc
        self.future.set_exception(error)


def _looks_read_only(path: str) -> bool:
    """An existing file this process may not write, or in a folder it may not write (WAL mode
    writes files beside the database)."""
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.exists(path) and not (os.access(path, os.W_OK) and os.access(folder, os.W_OK))


def _path(path: object) -> str:
    """`path` as text, or `ConfigurationError` for what cannot name a database file."""
    try:
        text = os.fspath(path)  # type: ignore[call-overload]
    except TypeError:
        raise ConfigurationError(f"path must be a str or os.PathLike, not {type(path).__name__}") from None
    if not isinstance(text, str):
        raise ConfigurationError(f"path must be text (str or os.PathLike[str]), not {type(text).__name__}")
    if "\0" in text:
        raise ConfigurationError(f"path must not contain a NUL character: {text!r}")
    return text


def _check_path(path: str, read_only: bool | None) -> None:
    """The cheap checks that need no database: fail at `SQLiteStore(...)`, not after a model call."""
    if path in ("", ":memory:") or path.startswith("file:"):
        return
    if os.path.isdir(path):
        raise StoreError(f"cannot open {path}: it is a directory; give the path of a database file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise StoreError(f"cannot open {path}: the directory {folder} does not exist; create it first")
    if not os.path.exists(path):
        if read_only:
            raise StoreError(f"cannot open {path} read-only: the file does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StoreError(f"cannot create {path}: the directory {folder} is not writable")


class _Worker:
    """The thread that owns the connection. Kept apart from the store so that atexit and the
    thread hold no reference to the store itself."""

    def __init__(self, path: str, synchronous: str, busy_timeout: float, read_only: bool | None) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self.jobs: SimpleQueue[_Job | None] = SimpleQueue()
        # resolves once the connection is open; `read_only` is decided by then
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.thread = threading.Thread(
            target=self._run, name=f"lionflow-sqlite:{os.path.basename(path)}", daemon=True
        )
        self.thread.start()

    def _connect(self) -> sqlite3.Connection:
        if self.read_only is None:
            self.read_only = _looks_read_only(self.path)
        if self.read_only:
            return self._connect_read_only()
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
        try:
            self._refuse_foreign(connection)  # before WAL mode: another application's file stays as it is
            self._enter_wal(connection)
            connection.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            connection.execute("PRAGMA foreign_keys=ON")
            if self._schema_version(connection) != SCHEMA_VERSION:
                self._migrate(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _connect_read_only(self) -> sqlite3.Connection:
        uri = f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=ro"
        try:
            connection = self._open_uri(uri)
        except sqlite3.OperationalError:
            # A WAL database in a folder we may not write: SQLite cannot make its shared-memory
            # file there, so the file can only be read as immutable, which ignores the -wal file.
            # Committed writes still in it would silently be missing: refuse instead.
            wal = self.path + "-wal"
            if os.path.exists(wal) and os.path.getsize(wal) > 0:
                raise StoreError(
                    f"cannot read {self.path}: its {os.path.basename(wal)} file holds committed "
                    f"writes that a read-only open cannot see from here (the folder is not writable). "
                    f"Open it once with write access (that moves them into the database), or copy "
                    f"the database with its -wal file to a writable folder"
                ) from None
            connection = self._open_uri(uri + "&immutable=1")
        try:
            self._refuse_foreign(connection)
            version = self._schema_version(connection)
            if version < SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, older than this lionflow's "
                    f"{SCHEMA_VERSION}: open it once with write access to upgrade it"
                )
        except BaseException:
            connection.close()
            raise
        return connection

    def _open_uri(self, uri: str) -> sqlite3.Connection:
        connection = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=self.busy_timeout)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the file now
        except BaseException:
            connection.close()
            raise
        return connection

    def _refuse_foreign(self, connection: sqlite3.Connection) -> None:
        """`StoreError` for another application's database: no lionflow schema, other tables.
        (A lionflow database at version 0 has no tables: its migration is one transaction.)"""
        connection.execute("BEGIN")  # one snapshot: a concurrent first migration is all or nothing
        try:
            version = int(connection.execute("PRAGMA user_version").fetchone()[0])
            tables = [
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                    "AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name"
                )
            ]
        finally:
            connection.execute("COMMIT")
        if version == 0 and tables:
            raise StoreError(
                f"{self.path} is not a lionflow database: it has tables ({', '.join(tables[:5])}) "
                f"and no lionflow schema; give the path of a new file or of a lionflow database"
            )

    def _schema_version(self, connection: sqlite3.Connection) -> int:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"{self.path} has schema version {version}, newer than this lionflow's "
                f"{SCHEMA_VERSION}: upgrade lionflow to open it"
            )
        return version

    def _migrate(self, connection: sqlite3.Connection) -> None:
        # Read the version again under the write lock: two stores opening one new file at once
        # must not both see version 0 and both create the tables.
        connection.execute("BEGIN IMMEDIATE")
        try:
            for target in range(self._schema_version(connection) + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target - 1]:
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version={target}")
            connection.execute("COMMIT")
        except BaseException:
            roll_back(connection)
            raise

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
            self._serve()
        finally:
            self.stopped.set_result(None)

    def _serve(self) -> None:
        try:
            connection = self._connect()
        except BaseException as exc:
            opening = _Job(lambda _: None, self.ready, "open the database")
            opening.fail(self.path, exc)
            # Every job, queued already or later, gets the error rather than waiting forever.
            while (job := self.jobs.get()) is not None:
                if job.future.set_running_or_notify_cancel():
                    job.fail(self.path, exc)
            return
        self.ready.set_result(None)
        try:
            while (job := self.jobs.get()) is not None:
                if job.future.set_running_or_notify_cancel():
                    try:
                        job.future.set_result(job.work(connection))
                    except BaseException as exc:
                        job.fail(self.path, exc)
                # Drop the finished job now: waiting for the next one must not keep its future,
                # and through its callbacks the session and the store, alive.
                del job
        finally:
            connection.close()


class SQLiteStore(RoutedStore[sqlite3.Connection]):
    """Sessions in an SQLite file (see the module docstring).

    ::

        async with SQLiteStore("chat.db") as store:
            session = Session(store=store)
            ...
            again = await Session.load(store, session.id)

    A path in a missing directory, or one that is a directory, raises `StoreError` here; a file
    that is not a database raises it from `check()` (which every turn awaits before its request)
    or from the first read or write. `read_only=True` opens the file read-only; by default a file
    (or folder) this process may not write is opened read-only by itself.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "lionflow.db",
        *,
        synchronous: Literal["full", "normal"] = "full",
        busy_timeout: float = 30.0,
        read_only: bool | None = None,
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ConfigurationError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        self.path = _path(path)
        _check_path(self.path, read_only)
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, int | float)
            or not 0 <= busy_timeout < math.inf
        ):
            raise ConfigurationError(
                f"busy_timeout must be a non-negative number of seconds, not {busy_timeout!r}"
            )
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self._worker: _Worker | None = None
        self._release: weakref.finalize[Any, Any] | None = None
        self._lock = threading.Lock()
        self._closed = False

    _sql = StoreSql(
        _sqlite_sql.store_write,
        _sqlite_sql.load_session,
        _sqlite_sql.list_sessions,
        _sqlite_sql.delete_session,
        served.append_events,
        served.load_events,
        served.drop_events,
        served.store_served,
        served.load_served,
    )

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def _started(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise StoreClosed(f"{self!r} is closed")
            if self._worker is None:
                worker = _Worker(self.path, self.synchronous, self.busy_timeout, self.read_only)
                self._release = track(self, worker)
                self._worker = worker
            return self._worker

    def _call(
        self,
        work: Callable[[sqlite3.Connection], T],
        action: str,
        *,
        session_id: str | None = None,
        turn: str | None = None,
    ) -> concurrent.futures.Future[T]:
        worker = self._started()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        worker.jobs.put(_Job(work, future, action, session_id, turn))
        return future

    async def _read(
        self, work: Callable[[sqlite3.Connection], T], action: str, *, session_id: str | None = None
    ) -> T:
        return await wait_for(self._call(work, action, session_id=session_id))

    async def check(self, *, writable: bool = False) -> None:
        """Open the database now; raise `StoreError` if it cannot be opened (a corrupt file, a
        folder without permission, ...), or, with `writable`, if it is open read-only."""
        worker = self._started()
        await wait_for(worker.ready)
        if writable and worker.read_only:
            raise StoreError(f"{self.path} is open read-only: nothing can be stored in it")

    async def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` for a sound database."""
        return await self._read(
            lambda connection: str(connection.execute("PRAGMA integrity_check").fetchone()[0]),
            "check the database's integrity",
        )

    async def aclose(self) -> None:
        """Finish the queued writes, then close the connection. Safe to call more than once."""
        with self._lock:
            self._closed = True
            worker, self._worker = self._worker, None
            release, self._release = self._release, None
        await finish(worker, release)
