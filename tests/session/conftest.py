"""The stores the contract tests run on: SQLite, and PostgreSQL on a real server the tests start.

`store_factory` is parametrized over both: a test opens stores with `store_factory.open()` (all on
one database, as several processes would) and makes writes fail with `store_factory.blocked()`
(another connection holding the write lock, as another process would). Each test gets a database
of its own. The PostgreSQL tests skip only where no PostgreSQL binaries are installed (and
tests/conftest.py fails that skip under CI).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from lionflow import AssistantResponseContent, InstructionContent, Message, PostgresStore, SQLiteStore
from tests.session.postgres import PostgresServer, find_binaries


class SQLiteStores:
    """Stores on one SQLite file."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spec = str(path)  # what tests/session/worker.py opens

    def open(self, *, fail_fast: bool = False) -> SQLiteStore:
        return SQLiteStore(self.path, busy_timeout=0.2 if fail_fast else 30.0)

    def count(self, table: str) -> int:
        """Rows in one of the store's tables, read from another connection."""
        with closing(sqlite3.connect(self.path)) as raw:
            return int(raw.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    @contextmanager
    def blocked(self) -> Iterator[None]:
        """Hold SQLite's write lock from another connection: writes of a `fail_fast` store fail."""
        with closing(sqlite3.connect(self.path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                other.execute("ROLLBACK")


class PostgresStores:
    """Stores on one PostgreSQL database."""

    kind = "postgres"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.spec = f"pg:{dsn}"

    def open(self, *, fail_fast: bool = False, timeout: float = 30.0) -> PostgresStore:
        return PostgresStore(self.dsn, lock_timeout=0.2 if fail_fast else None, timeout=timeout)

    def count(self, table: str) -> int:
        """Rows in one of the store's tables, read from another connection."""
        import psycopg

        with psycopg.connect(self.dsn) as raw:
            row = raw.execute(f"SELECT count(*) FROM lionflow.{table}").fetchone()
            return int(row[0]) if row else 0

    @contextmanager
    def blocked(self) -> Iterator[None]:
        """Lock the sessions table against writes from another connection: every turn's write
        waits for it, and a `fail_fast` store's gives up after its lock timeout."""
        import psycopg

        from lionflow.session.stores import _postgres_sql

        with psycopg.connect(self.dsn, autocommit=True) as other:
            _postgres_sql.migrate(other, "lionflow")  # the table must exist to be locked
            with other.transaction():
                other.execute("LOCK TABLE lionflow.sessions IN EXCLUSIVE MODE")  # reads still pass
                yield


Stores = SQLiteStores | PostgresStores


def turn(text: str, answer: str | None = None) -> tuple[Message, Message]:
    """A turn's two messages: `text` asked, `answer` (by default "re: `text`") answered."""
    return (
        Message(content=InstructionContent(instruction=text)),
        Message(
            content=AssistantResponseContent(assistant_response=f"re: {text}" if answer is None else answer)
        ),
    )


def _started_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server started in a temporary directory, closed after; a skip where no
    PostgreSQL binaries are installed."""
    binaries = find_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) installed: `make system` installs them")
    server = PostgresServer(binaries)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole run."""
    yield from _started_server()


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of the test's own, which it may stop and start."""
    yield from _started_server()


@pytest.fixture
def postgres_stores(postgres_server: PostgresServer) -> PostgresStores:
    """Stores on a new database of the shared server."""
    return PostgresStores(postgres_server.database())


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    if request.param == "sqlite":
        return SQLiteStores(tmp_path / "chat.db")
    stores: PostgresStores = request.getfixturevalue("postgres_stores")
    return stores
