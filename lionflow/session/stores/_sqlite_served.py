"""The SQL of what `SQLiteStore` keeps for a server: its streams' events, for resuming, and the
ids of its answers. Run on the store's thread, one transaction per job."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime

from lionflow.session.stores._routed import event_rows, served_record, served_row
from lionflow.session.stores._sqlite_sql import roll_back
from lionflow.session.stores.base import EventBatch, ServedRecord, StoredEvents


def _in_transaction(
    connection: sqlite3.Connection, statements: list[tuple[str, Sequence[tuple[object, ...]]]]
) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in statements:
            connection.executemany(sql, rows)
        connection.execute("COMMIT")
    except BaseException:
        roll_back(connection)
        raise


def append_events(connection: sqlite3.Connection, batches: tuple[EventBatch, ...]) -> None:
    now = time.time()
    streams = [(batch.stream_id, now, int(batch.ended)) for batch in batches]
    events = event_rows(batches)
    _in_transaction(
        connection,
        [
            (
                "INSERT INTO streams (id, updated_at, ended) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE "
                "SET updated_at = excluded.updated_at, ended = max(ended, excluded.ended)",
                streams,
            ),
            # OR IGNORE: a batch written again after a failed attempt must not fail on what landed.
            ("INSERT OR IGNORE INTO stream_events (stream_id, number, data) VALUES (?, ?, ?)", events),
        ],
    )


def load_events(connection: sqlite3.Connection, stream_id: str, after: int) -> StoredEvents | None:
    row = connection.execute("SELECT ended FROM streams WHERE id = ?", (stream_id,)).fetchone()
    if row is None:
        return None
    events = [
        bytes(data)
        for (data,) in connection.execute(
            "SELECT data FROM stream_events WHERE stream_id = ? AND number > ? ORDER BY number",
            (stream_id, after),
        )
    ]
    return StoredEvents(stream_id, events, bool(row[0]))


def drop_events(connection: sqlite3.Connection, before: datetime) -> int:
    cutoff = before.timestamp()
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            "DELETE FROM stream_events WHERE stream_id IN (SELECT id FROM streams WHERE updated_at < ?)",
            (cutoff,),
        )
        dropped = connection.execute("DELETE FROM streams WHERE updated_at < ?", (cutoff,)).rowcount
        connection.execute("COMMIT")
    except BaseException:
        roll_back(connection)
        raise
    return int(dropped)


def store_served(connection: sqlite3.Connection, record: ServedRecord) -> None:
    _in_transaction(
        connection, [("INSERT OR REPLACE INTO served VALUES (?, ?, ?, ?, ?, ?, ?)", [served_row(record)])]
    )


def load_served(connection: sqlite3.Connection, served_id: str) -> ServedRecord | None:
    return served_record(
        connection.execute(
            "SELECT id, kind, session_id, branch, message_id, body, created_at FROM served WHERE id = ?",
            (served_id,),
        ).fetchone()
    )
