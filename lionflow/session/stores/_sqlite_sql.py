"""The SQL of `SQLiteStore`: its schema and what its thread runs, one transaction per write."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from lionflow.errors import ConfigurationError
from lionflow.session.messages import Message
from lionflow.session.stores._routed import (
    branch_record,
    branch_row,
    check_same,
    message_row,
    snapshot,
)
from lionflow.session.stores.base import (
    BranchRecord,
    SessionInfo,
    SessionSnapshot,
    StoreWrite,
    metadata_text,
)

# What a server keeps: its streams' events, for resuming, and its answers' ids.
_SERVED = [
    """CREATE TABLE streams (
        id TEXT PRIMARY KEY,
        updated_at REAL NOT NULL,
        ended INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE stream_events (
        stream_id TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (stream_id, number)
    ) WITHOUT ROWID""",
    "CREATE INDEX streams_by_age ON streams(updated_at)",
    """CREATE TABLE served (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        session_id TEXT NOT NULL,
        branch TEXT NOT NULL,
        message_id TEXT,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX served_by_session ON served(session_id)",
]

# Each entry upgrades the schema from the version before it; index 0 creates version 1.
MIGRATIONS: list[list[str]] = [
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
    _SERVED,  # version 2: what a server keeps (see `_sqlite_served`)
]
SCHEMA_VERSION = len(MIGRATIONS)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def roll_back(connection: sqlite3.Connection) -> None:
    # Some errors (a full disk, an I/O error) end the transaction themselves: a second ROLLBACK
    # would hide the error that matters behind "no transaction is active".
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def store_write(connection: sqlite3.Connection, write: StoreWrite) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        _write_session(connection, write)
        _write_messages(connection, write)
        _write_branches(connection, write)
        # Append: the position is computed here, inside the transaction, from what is stored;
        # a plain INSERT, so a clash would fail the write rather than overwrite a stored message.
        connection.executemany(
            "INSERT INTO branch_items (branch_id, position, message_id) "
            "SELECT ?1, coalesce(max(position), -1) + 1, ?2 FROM branch_items WHERE branch_id = ?1",
            write.placements,
        )
        connection.execute("COMMIT")
    except BaseException:
        roll_back(connection)
        raise


def _write_session(connection: sqlite3.Connection, write: StoreWrite) -> None:
    if (
        write.new_session
        and connection.execute("SELECT 1 FROM sessions WHERE id = ?", (write.session_id,)).fetchone()
    ):
        # checked here, in the write's transaction: of two concurrent imports, one is refused
        raise ConfigurationError(
            f"session {write.session_id!r} is already in this store: delete it first to replace it"
        )
    connection.execute(
        "INSERT INTO sessions (id, created_at, updated_at, metadata) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at",
        (
            write.session_id,
            write.session_created_at.isoformat(),
            _now(),
            metadata_text(write.session_metadata or {}),
        ),
    )
    # Only metadata the writer changed: another writer's newer metadata is not reverted.
    if write.session_metadata is not None:
        connection.execute(
            "UPDATE sessions SET metadata = ? WHERE id = ?",
            (metadata_text(write.session_metadata), write.session_id),
        )


def _write_messages(connection: sqlite3.Connection, write: StoreWrite) -> None:
    for message in write.messages:
        data = message.model_dump_json()
        inserted = connection.execute(
            "INSERT OR IGNORE INTO messages (session_id, id, created_at, role, kind, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            message_row(write.session_id, message, data),
        ).rowcount
        if not inserted:
            (stored,) = connection.execute(
                "SELECT data FROM messages WHERE session_id = ? AND id = ?", (write.session_id, message.id)
            ).fetchone()
            check_same(stored, data, message)


def _write_branches(connection: sqlite3.Connection, write: StoreWrite) -> None:
    for branch in write.branches:
        if branch.order is not None:
            created = connection.execute(
                "INSERT INTO branches (id, session_id, name, created_at, metadata) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO NOTHING",
                branch_row(write.session_id, branch),
            ).rowcount
            if created:
                connection.executemany(
                    "INSERT INTO branch_items (branch_id, position, message_id) VALUES (?, ?, ?)",
                    [(branch.id, position, message_id) for position, message_id in enumerate(branch.order)],
                )
                continue
        if branch.metadata is not None:
            connection.execute(
                "UPDATE branches SET metadata = ? WHERE id = ? AND session_id = ?",
                (metadata_text(branch.metadata), branch.id, write.session_id),
            )


def load_session(connection: sqlite3.Connection, session_id: str) -> SessionSnapshot | None:
    # One read transaction: one snapshot of the database (WAL), so that a write committed between
    # two of the reads (another store adding a turn) cannot show a branch naming an unread message.
    connection.execute("BEGIN")
    try:
        return _load_session(connection, session_id)
    finally:
        roll_back(connection)


def _load_session(connection: sqlite3.Connection, session_id: str) -> SessionSnapshot | None:
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
        branches.append((branch_record(branch_id, name, created_at, metadata), order))
    return snapshot(session_id, row, messages, branches)


def list_sessions(connection: sqlite3.Connection) -> list[SessionInfo]:
    rows = connection.execute(
        "SELECT s.id, s.created_at, s.updated_at, "
        "(SELECT count(*) FROM messages m WHERE m.session_id = s.id), s.metadata "
        "FROM sessions s ORDER BY s.updated_at DESC"
    ).fetchall()
    result = []
    for session_id, created_at, updated_at, count, metadata in rows:
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
                json.loads(metadata),
            )
        )
    return result


def delete_session(connection: sqlite3.Connection, session_id: str) -> bool:
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            "DELETE FROM branch_items WHERE branch_id IN (SELECT id FROM branches WHERE session_id = ?)",
            (session_id,),
        )
        connection.execute("DELETE FROM served WHERE session_id = ?", (session_id,))
        deleted = connection.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount
        connection.execute("COMMIT")
    except BaseException:
        roll_back(connection)
        raise
    return bool(deleted)
