"""The SQL of what `PostgresStore` keeps for a server: its streams' events, for resuming, and the
ids of its answers (tables made by `_postgres_sql.MIGRATIONS`). One transaction per job, on a
connection in autocommit mode whose ``search_path`` is the store's schema."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lionflow.session.stores._routed import event_rows, served_record, served_row
from lionflow.session.stores.base import EventBatch, ServedRecord, StoredEvents

if TYPE_CHECKING:
    from psycopg import Connection


def append_events(connection: Connection[Any], batches: tuple[EventBatch, ...]) -> None:
    now = time.time()
    with connection.transaction(), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO streams (id, updated_at, ended) VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE "
            "SET updated_at = excluded.updated_at, ended = streams.ended OR excluded.ended",
            [(batch.stream_id, now, batch.ended) for batch in batches],
        )
        events = event_rows(batches)
        if events:
            # DO NOTHING: a batch written again after a failed attempt must not fail on what landed.
            cursor.executemany(
                "INSERT INTO stream_events (stream_id, number, data) VALUES (%s, %s, %s) "
                "ON CONFLICT (stream_id, number) DO NOTHING",
                events,
            )


def load_events(connection: Connection[Any], stream_id: str, after: int) -> StoredEvents | None:
    with connection.transaction():
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = connection.execute("SELECT ended FROM streams WHERE id = %s", (stream_id,)).fetchone()
        if row is None:
            return None
        events = [
            bytes(data)
            for (data,) in connection.execute(
                "SELECT data FROM stream_events WHERE stream_id = %s AND number > %s ORDER BY number",
                (stream_id, after),
            )
        ]
    return StoredEvents(stream_id, events, bool(row[0]))


def drop_events(connection: Connection[Any], before: datetime) -> int:
    with connection.transaction():
        # the streams' events go with them (ON DELETE CASCADE)
        return int(
            connection.execute("DELETE FROM streams WHERE updated_at < %s", (before.timestamp(),)).rowcount
        )


def store_served(connection: Connection[Any], record: ServedRecord) -> None:
    with connection.transaction():
        connection.execute(
            "INSERT INTO served (id, kind, session_id, branch, message_id, body, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, "
            "session_id = excluded.session_id, branch = excluded.branch, message_id = excluded.message_id, "
            "body = excluded.body, created_at = excluded.created_at",
            served_row(record),
        )


def load_served(connection: Connection[Any], served_id: str) -> ServedRecord | None:
    return served_record(
        connection.execute(
            "SELECT id, kind, session_id, branch, message_id, body, created_at FROM served WHERE id = %s",
            (served_id,),
        ).fetchone()
    )
