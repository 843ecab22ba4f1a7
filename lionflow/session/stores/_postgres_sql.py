"""The SQL of `PostgresStore`: its schema, its migrations, and what its jobs run, one transaction each
(what it keeps for a server is in `_postgres_served`).

Every function takes a psycopg connection in autocommit mode and opens its own transaction, so a
job is all or nothing. The connection's ``search_path`` is the store's schema (see `configure`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

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
    SessionInfo,
    SessionSnapshot,
    StoreWrite,
    metadata_text,
)

if TYPE_CHECKING:
    from psycopg import Connection

# Each entry upgrades the schema from the version before it; index 0 creates version 1.
# Text, not jsonb, for JSON: what was written is read back byte for byte (key order, and the
# \u0000 escapes jsonb refuses). Creation times stay ISO text, as in SQLite: naive or aware, a
# timestamp comes back as it went in. `seq` keeps insertion order (SQLite's rowid).
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE sessions (
            id text PRIMARY KEY,
            created_at text NOT NULL,
            updated_at timestamptz NOT NULL,
            metadata text NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX sessions_by_update ON sessions (updated_at)",
        """CREATE TABLE messages (
            seq bigint GENERATED ALWAYS AS IDENTITY,
            session_id text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            id text NOT NULL,
            created_at text NOT NULL,
            role text NOT NULL,
            kind text NOT NULL,
            data text NOT NULL,
            PRIMARY KEY (session_id, id)
        )""",
        "CREATE INDEX messages_in_order ON messages (session_id, seq)",
        """CREATE TABLE branches (
            seq bigint GENERATED ALWAYS AS IDENTITY,
            id text PRIMARY KEY,
            session_id text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            name text NOT NULL,
            created_at text NOT NULL,
            metadata text NOT NULL DEFAULT '{}',
            UNIQUE (session_id, name)
        )""",
        """CREATE TABLE branch_items (
            branch_id text NOT NULL REFERENCES branches (id) ON DELETE CASCADE,
            position integer NOT NULL,
            message_id text NOT NULL,
            PRIMARY KEY (branch_id, position)
        )""",
        # what a server keeps: its streams' events, for resuming, and its answers' ids
        """CREATE TABLE streams (
            id text PRIMARY KEY,
            updated_at double precision NOT NULL,
            ended boolean NOT NULL DEFAULT false
        )""",
        "CREATE INDEX streams_by_age ON streams (updated_at)",
        """CREATE TABLE stream_events (
            stream_id text NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
            number integer NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (stream_id, number)
        )""",
        """CREATE TABLE served (
            id text PRIMARY KEY,
            kind text NOT NULL,
            session_id text NOT NULL,
            branch text NOT NULL,
            message_id text,
            body text NOT NULL,
            created_at text NOT NULL
        )""",
        "CREATE INDEX served_by_session ON served (session_id)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


def configure(schema: str) -> Any:
    """The pool's per-connection setup: the store's schema first on the search path."""
    from psycopg import sql

    statement = sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))

    def run(connection: Connection[Any]) -> None:
        connection.execute(statement)

    return run


def migrate(connection: Connection[Any], schema: str) -> int:
    """Create or upgrade the schema; returns the version found. Safe when several processes do it
    at once: a transaction-scoped advisory lock (keyed on the schema's name) serializes them, and
    each reads the version again under it, so only the first applies a migration. A schema that is
    up to date is only read: a role that may use the tables but not create anything (migrations
    run by an owner, with `setup()`) uses the store."""
    from psycopg import sql

    found = _version(connection, schema)
    if found == SCHEMA_VERSION:
        return found
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(hashtext('lionflow schema ' || %s))", (schema,))
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        # the tables go into the schema whatever the connection's own search_path
        connection.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
        found = int(row[0]) if row is not None and row[0] is not None else 0
        if found > SCHEMA_VERSION:
            raise ConfigurationError(
                f"schema {schema!r} has version {found}, newer than this lionflow's {SCHEMA_VERSION}: "
                f"upgrade lionflow to use it"
            )
        for target in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target - 1]:
                connection.execute(statement)
        if found < SCHEMA_VERSION:
            connection.execute("DELETE FROM schema_version")
            connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
    return found


def _version(connection: Connection[Any], schema: str) -> int | None:
    """The schema's version without taking a lock or creating anything; None where it has none.
    `ConfigurationError` for a version newer than this lionflow's."""
    from psycopg import sql

    with connection.transaction():
        row = connection.execute(
            "SELECT to_regclass(format('%%I.schema_version', %s::text)) IS NOT NULL", (schema,)
        ).fetchone()
        if row is None or not row[0]:
            return None
        row = connection.execute(
            sql.SQL("SELECT max(version) FROM {}.schema_version").format(sql.Identifier(schema))
        ).fetchone()
    found = int(row[0]) if row is not None and row[0] is not None else 0
    if found > SCHEMA_VERSION:
        raise ConfigurationError(
            f"schema {schema!r} has version {found}, newer than this lionflow's {SCHEMA_VERSION}: "
            f"upgrade lionflow to use it"
        )
    return found


def store_write(connection: Connection[Any], write: StoreWrite) -> None:
    with connection.transaction():
        _write_session(connection, write)
        _write_messages(connection, write)
        _write_branches(connection, write)
        # Append. The session's row is locked by _write_session until this transaction ends, so
        # every writer of the session (any process) waits for the one before it; each statement
        # then sees what that one committed (READ COMMITTED), and the next position is free. A
        # plain INSERT: a clash would fail the write rather than overwrite a stored message.
        if write.placements:
            with connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO branch_items (branch_id, position, message_id) "
                    "SELECT %(branch)s, coalesce(max(position), -1) + 1, %(message)s "
                    "FROM branch_items WHERE branch_id = %(branch)s",
                    [{"branch": branch, "message": message} for branch, message in write.placements],
                )


def _write_session(connection: Connection[Any], write: StoreWrite) -> None:
    row = (
        write.session_id,
        write.session_created_at.isoformat(),
        metadata_text(write.session_metadata or {}),
    )
    if write.new_session:
        # An import: of two concurrent ones, the second waits on the first's row, then finds it.
        inserted = connection.execute(
            "INSERT INTO sessions (id, created_at, updated_at, metadata) "
            "VALUES (%s, %s, clock_timestamp(), %s) ON CONFLICT (id) DO NOTHING",
            row,
        ).rowcount
        if not inserted:
            raise ConfigurationError(
                f"session {write.session_id!r} is already in this store: delete it first to replace it"
            )
        return
    # The upsert locks the session's row: writers of one session go one at a time.
    connection.execute(
        "INSERT INTO sessions (id, created_at, updated_at, metadata) "
        "VALUES (%s, %s, clock_timestamp(), %s) "
        "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at",
        row,
    )
    # Only metadata the writer changed: another writer's newer metadata is not reverted.
    if write.session_metadata is not None:
        connection.execute(
            "UPDATE sessions SET metadata = %s WHERE id = %s",
            (metadata_text(write.session_metadata), write.session_id),
        )


def _write_messages(connection: Connection[Any], write: StoreWrite) -> None:
    for message in write.messages:
        data = message.model_dump_json()
        inserted = connection.execute(
            "INSERT INTO messages (session_id, id, created_at, role, kind, data) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (session_id, id) DO NOTHING",
            message_row(write.session_id, message, data),
        ).rowcount
        if not inserted:
            stored = connection.execute(
                "SELECT data FROM messages WHERE session_id = %s AND id = %s", (write.session_id, message.id)
            ).fetchone()
            if stored is not None:
                check_same(stored[0], data, message)


def _write_branches(connection: Connection[Any], write: StoreWrite) -> None:
    for branch in write.branches:
        if branch.order is not None:
            created = connection.execute(
                "INSERT INTO branches (id, session_id, name, created_at, metadata) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                branch_row(write.session_id, branch),
            ).rowcount
            if created:
                if branch.order:
                    with connection.cursor() as cursor:
                        cursor.executemany(
                            "INSERT INTO branch_items (branch_id, position, message_id) VALUES (%s, %s, %s)",
                            [
                                (branch.id, position, message_id)
                                for position, message_id in enumerate(branch.order)
                            ],
                        )
                continue
        if branch.metadata is not None:
            connection.execute(
                "UPDATE branches SET metadata = %s WHERE id = %s AND session_id = %s",
                (metadata_text(branch.metadata), branch.id, write.session_id),
            )


def load_session(connection: Connection[Any], session_id: str) -> SessionSnapshot | None:
    # One snapshot for every read: a turn committed between two of them (another writer) cannot
    # show a branch naming a message that was not read.
    with connection.transaction():
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = connection.execute(
            "SELECT created_at, metadata FROM sessions WHERE id = %s", (session_id,)
        ).fetchone()
        if row is None:
            return None
        messages = [
            Message.model_validate_json(data)
            for (data,) in connection.execute(
                "SELECT data FROM messages WHERE session_id = %s ORDER BY seq", (session_id,)
            )
        ]
        records = connection.execute(
            "SELECT id, name, created_at, metadata FROM branches WHERE session_id = %s ORDER BY seq",
            (session_id,),
        ).fetchall()
        orders: dict[str, list[str]] = {branch_id: [] for branch_id, *_ in records}
        for branch_id, message_id in connection.execute(
            "SELECT i.branch_id, i.message_id FROM branch_items i JOIN branches b ON b.id = i.branch_id "
            "WHERE b.session_id = %s ORDER BY i.branch_id, i.position",
            (session_id,),
        ):
            orders[branch_id].append(message_id)
    branches = [
        (branch_record(branch_id, name, created, metadata), orders[branch_id])
        for branch_id, name, created, metadata in records
    ]
    return snapshot(session_id, row, messages, branches)


def list_sessions(connection: Connection[Any]) -> list[SessionInfo]:
    with connection.transaction():
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        rows = connection.execute(
            "SELECT s.id, s.created_at, s.updated_at, "
            "(SELECT count(*) FROM messages m WHERE m.session_id = s.id), s.metadata, "
            "coalesce((SELECT array_agg(b.name ORDER BY b.seq) FROM branches b WHERE b.session_id = s.id), "
            "'{}'::text[]) "
            "FROM sessions s ORDER BY s.updated_at DESC"
        ).fetchall()
    return [
        SessionInfo(
            session_id,
            datetime.fromisoformat(created),
            updated.astimezone(UTC),
            int(count),
            list(names),
            json.loads(metadata),
        )
        for session_id, created, updated, count, metadata, names in rows
    ]


def delete_session(connection: Connection[Any], session_id: str) -> bool:
    with connection.transaction():
        connection.execute("DELETE FROM served WHERE session_id = %s", (session_id,))
        # messages, branches and their items go with the session (ON DELETE CASCADE)
        deleted = connection.execute("DELETE FROM sessions WHERE id = %s", (session_id,)).rowcount
    return bool(deleted)
