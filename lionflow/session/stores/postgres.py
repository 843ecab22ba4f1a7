"""`PostgresStore`: sessions in a PostgreSQL database, shared by many processes and servers.

Same contract as `SQLiteStore`: `submit()` queues a write and never blocks; one thread per store,
with a connection of its own, runs the writes in submission order, each in one transaction, and
resolves its future once PostgreSQL has committed it. Reads run in anyio's worker threads on the
connections of a `psycopg_pool.ConnectionPool`, after the writes submitted before them (a load sees
the turns this store was given).

Why psycopg's *sync* API: lionflow runs on asyncio and trio, and psycopg's async connections (and
`AsyncConnectionPool`) run only on asyncio. Sync connections used from threads work under both,
and keep the event loop off the database's latency as SQLite's thread does.

Many writers on one session (several `Session` objects, processes, servers) never overwrite each
other: a write first upserts the session's row, which locks it until the write commits, so writers
of one session take turns, and positions in a branch are computed inside that transaction from
what is stored. Writers of different sessions (other stores, other processes) do not wait for
each other.

The schema (by default PostgreSQL schema ``lionflow``) is created or upgraded on first use, under a
transaction-scoped advisory lock, so several processes starting at once migrate it once; its version
is in the ``schema_version`` table. ``await store.setup()`` does it up front, for deployments that
prefer that; a schema already up to date is only read, so the role a server runs as needs no
CREATE privilege. A task cancelled while it awaits a read returns at once (the read's thread
finishes on its own, as a queued write does). Every failure (the server unreachable, a lock not
granted within `lock_timeout`, ...) is a `StoreError` naming the session and turn, whose
``__cause__`` is psycopg's error; a turn whose write failed stays in memory, and the next write
goes to a fresh connection.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import math
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio.lowlevel
import anyio.to_thread

from lionflow.errors import ConfigurationError, LionflowError, MissingDependency, StoreClosed, StoreError
from lionflow.session.stores import _postgres_served as served
from lionflow.session.stores import _postgres_sql as pg
from lionflow.session.stores._routed import RoutedStore, StoreSql, finish, track
from lionflow.session.stores.base import wait_for

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg_pool import ConnectionPool

T = TypeVar("T")
Work = Callable[["Connection[Any]"], T]


def _failure(
    where: str, action: str, exc: BaseException, session_id: str | None, turn: str | None
) -> BaseException:
    """`exc` as a `StoreError` naming the database, the session and the turn (lionflow's own
    errors and cancellations pass as they are)."""
    if isinstance(exc, LionflowError) or not isinstance(exc, Exception):
        return exc
    error = StoreError(f"{where}: could not {action}: {exc}", session_id=session_id, turn=turn)
    error.__cause__ = exc
    return error


def _nothing(connection: Connection[Any]) -> None:
    """The work of `setup()`: the schema check that precedes every job."""


def _raise(error: BaseException, original: Exception) -> NoReturn:
    if error is original:
        raise original
    raise error from original


def _parse(dsn: str) -> dict[str, Any]:
    """The dsn's parameters, or `ConfigurationError` for one libpq cannot parse. Not libpq's own
    message: it quotes the text it stumbled on, which may be (part of) the password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(dsn)
    except Exception:
        raise ConfigurationError(
            "dsn is not a connection string libpq can parse (key=value pairs, values with spaces "
            "in single quotes, or a postgresql:// URL with %-encoded special characters)"
        ) from None


def _where(dsn: str) -> str:
    """The database as a message names it: host, port and name, never a password."""
    params = _parse(dsn)
    host = str(params.get("host") or "localhost")
    port = params.get("port")
    name = params.get("dbname") or params.get("user") or ""
    return f"PostgreSQL {host}{f':{port}' if port else ''}/{name}"


@dataclass(frozen=True, slots=True)
class _Job:
    work: Callable[[Connection[Any]], Any]
    future: concurrent.futures.Future[Any]
    action: str  # "store turn T of session S", ...
    session_id: str | None = None
    turn: str | None = None


class _Database:
    """The writer thread with its connection, the readers' pool and the schema check. Kept apart
    from the store so that atexit and the thread hold no reference to the store itself."""

    def __init__(
        self, pool: ConnectionPool[Any], connect: Callable[[], Connection[Any]], schema: str, where: str
    ) -> None:
        self.pool = pool
        self.connect = connect
        self.schema = schema
        self.where = where
        self.jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self.stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._ready = False
        self._ready_lock = threading.Lock()
        self._connection: Connection[Any] | None = None
        self.thread = threading.Thread(target=self._run, name=f"lionflow-postgres:{where}", daemon=True)
        self.thread.start()

    @property
    def is_ready(self) -> bool:
        return self._ready

    def ready(self, connection: Connection[Any]) -> None:
        """Create or upgrade the schema once (again after a failed attempt)."""
        with self._ready_lock:
            if not self._ready:
                pg.migrate(connection, self.schema)
                self._ready = True

    def run(self, work: Callable[[Connection[Any]], T]) -> T:
        """`work` on a connection of the readers' pool, in the calling thread. Reads change
        nothing, so one that a connection broken under it failed (a server restarted since the
        connection was last used) runs again on another, until the pool has none left that the
        restart broke."""
        import psycopg

        for attempt in itertools.count(1):
            used: Connection[Any] | None = None
            try:
                with self.pool.connection() as connection:
                    used = connection
                    self.ready(connection)
                    return work(connection)
            except psycopg.OperationalError:
                if used is None or not used.broken or attempt > (self.pool.max_size or 1):
                    raise
        raise AssertionError("unreachable")

    def _writer(self) -> Connection[Any]:
        """The writer's connection, checked (one empty query) and made again if it broke: a
        server restart between two writes costs neither of them. Not a pooled one, because a
        pool that failed to connect while the server was away retries only after a growing
        delay, and the first write after the server is back must not wait for that."""
        connection = self._connection
        if connection is not None:
            try:
                type(self.pool).check_connection(connection)
                return connection
            except Exception:
                connection.close()
                self._connection = None
        self._connection = connection = self.connect()
        return connection

    def _write(self, work: Callable[[Connection[Any]], T]) -> T:
        connection = self._writer()
        try:
            self.ready(connection)
            return work(connection)
        finally:
            if connection.broken or connection.closed:
                connection.close()
                self._connection = None

    def _run(self) -> None:
        try:
            while (job := self.jobs.get()) is not None:
                if job.future.set_running_or_notify_cancel():
                    try:
                        job.future.set_result(self._write(job.work))
                    except BaseException as exc:
                        job.future.set_exception(
                            _failure(self.where, job.action, exc, job.session_id, job.turn)
                        )
                del job  # waiting for the next job must not keep this one's future (and session) alive
        finally:
            if self._connection is not None:
                self._connection.close()
            self.pool.close()
            self.stopped.set_result(None)


def _seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigurationError(f"{what} must be a positive number of seconds, not {value!r}")
    return float(value)


class PostgresStore(RoutedStore["Connection[Any]"]):
    """Sessions in a PostgreSQL database (see the module docstring). Extra ``lionflow[postgres]``.

    ::

        async with PostgresStore("postgresql://app@db.internal/chat", pool_size=8) as store:
            session = Session(store=store)
            ...
            again = await Session.load(store, session.id)

    `dsn` is a libpq connection string or URL. `pool_size` bounds the connections reads share (the
    writer has one more of its own). `timeout` is how long a job waits for a connection (an
    unreachable server fails a write after it); `lock_timeout`, if given, how long a statement
    waits for a lock held by someone else before the write fails. `schema` is the PostgreSQL schema
    holding the tables (created if absent).
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        timeout: float = 30.0,
        lock_timeout: float | None = None,
        schema: str = "lionflow",
    ) -> None:
        try:
            import psycopg  # noqa: F401 - only to say which extra is missing
            import psycopg_pool
        except ImportError as exc:
            raise MissingDependency(
                "postgres", exc.name or "psycopg", "postgres", what="PostgresStore"
            ) from exc
        if not isinstance(dsn, str):
            raise ConfigurationError(f"dsn must be a connection string, not {type(dsn).__name__}")
        _parse(dsn)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigurationError(f"pool_size must be a positive int, not {pool_size!r}")
        if not isinstance(schema, str) or not schema or "\0" in schema:
            raise ConfigurationError(f"schema must be a non-empty name, not {schema!r}")
        self.timeout = _seconds(timeout, "timeout")
        self.lock_timeout = None if lock_timeout is None else _seconds(lock_timeout, "lock_timeout")
        self.dsn = dsn
        self.pool_size = pool_size
        self.schema = schema
        self._where = _where(dsn)
        self._pool_class = psycopg_pool.ConnectionPool
        self._database: _Database | None = None
        self._release: weakref.finalize[Any, Any] | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._last: concurrent.futures.Future[Any] | None = None

    _sql = StoreSql(
        pg.store_write,
        pg.load_session,
        pg.list_sessions,
        pg.delete_session,
        served.append_events,
        served.load_events,
        served.drop_events,
        served.store_served,
        served.load_served,
    )

    def __repr__(self) -> str:
        return f"PostgresStore({self._where!r})"

    def _connection_setup(self) -> Callable[[Connection[Any]], None]:
        search_path = pg.configure(self.schema)
        lock_timeout = None if self.lock_timeout is None else f"{max(1, round(self.lock_timeout * 1000))}ms"

        def configure(connection: Connection[Any]) -> None:
            search_path(connection)
            if lock_timeout is not None:
                connection.execute("SELECT set_config('lock_timeout', %s, false)", (lock_timeout,))

        return configure

    def _connect(self) -> Connection[Any]:
        """A new connection for the writer, set up as the pool's are."""
        import psycopg

        extra: dict[str, Any] = {}
        if "connect_timeout" not in _parse(self.dsn):
            extra["connect_timeout"] = max(2, math.ceil(self.timeout))  # (libpq's least is 2)
        connection = psycopg.connect(self.dsn, autocommit=True, **extra)
        try:
            self._connection_setup()(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _started(self) -> _Database:
        with self._lock:
            if self._closed:
                raise StoreClosed(f"{self!r} is closed")
            if self._database is None:
                pool = self._pool_class(
                    self.dsn,
                    # connect on demand: nothing retries in the background while the server is away
                    min_size=0,
                    max_size=self.pool_size,
                    open=False,
                    timeout=self.timeout,
                    kwargs={"autocommit": True},  # each job opens its own transaction
                    configure=self._connection_setup(),
                    name=self._where,
                )
                pool.open(wait=False)
                database = _Database(pool, self._connect, self.schema, self._where)
                self._release = track(self, database)
                self._database = database
            return self._database

    def _call(
        self, work: Work[T], action: str, *, session_id: str | None = None, turn: str | None = None
    ) -> concurrent.futures.Future[T]:
        """Queue `work` for the writer thread, after everything queued before it."""
        database = self._started()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            database.jobs.put(_Job(work, future, action, session_id, turn))
            self._last = future
        return future

    async def _read(self, work: Work[T], action: str, *, session_id: str | None = None) -> T:
        """Run `work` in a worker thread once the writes submitted before it are done."""
        database = self._started()
        last = self._last
        if last is not None:
            # Writes run in order: the last one done means all are. Its failure is its own
            # caller's to hear of; the read goes on.
            with contextlib.suppress(Exception):
                await wait_for(last)
        try:
            # A cancelled caller returns at once, as with SQLite's queued jobs: the work goes on in
            # its thread (it waits at most `timeout` for a connection, or `lock_timeout` for a
            # lock) and its outcome is dropped. Otherwise a cancel scope around a delete waiting
            # on another writer's lock, or a read waiting for a server that is away, would not
            # fire until the database answered.
            return await anyio.to_thread.run_sync(database.run, work, abandon_on_cancel=True)
        except Exception as exc:
            _raise(_failure(self._where, action, exc, session_id, None), exc)

    async def setup(self) -> None:
        """Connect and create or upgrade the schema now (it happens on first use otherwise)."""
        database = self._started()
        if database.is_ready:
            await anyio.lowlevel.checkpoint()
            return
        try:
            await anyio.to_thread.run_sync(database.run, _nothing, abandon_on_cancel=True)
        except Exception as exc:
            _raise(_failure(self._where, "set up the schema", exc, None, None), exc)

    async def check(self, *, writable: bool = False) -> None:
        """Raise `StoreError` if the database cannot be reached or its schema set up. Once set up,
        no further round trip: a turn whose write then fails keeps its messages in memory."""
        await self.setup()

    async def aclose(self) -> None:
        """Finish the queued writes, then close the pool. Safe to call more than once."""
        with self._lock:
            self._closed = True
            database, self._database = self._database, None
            release, self._release = self._release, None
            self._last = None
        await finish(database, release)
