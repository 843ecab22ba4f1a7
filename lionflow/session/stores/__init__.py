"""Session persistence: the store interface, the embedded SQLite default and PostgreSQL."""

from lionflow.errors import StoreClosed
from lionflow.session.stores._sqlite_sql import SCHEMA_VERSION
from lionflow.session.stores.base import (
    BranchWrite,
    EventBatch,
    ServedRecord,
    SessionInfo,
    SessionSnapshot,
    SessionStore,
    StoredEvents,
    StoreWrite,
)
from lionflow.session.stores.postgres import PostgresStore
from lionflow.session.stores.sqlite import SQLiteStore

__all__ = [
    "SCHEMA_VERSION",
    "BranchWrite",
    "EventBatch",
    "PostgresStore",
    "SQLiteStore",
    "ServedRecord",
    "SessionInfo",
    "SessionSnapshot",
    "SessionStore",
    "StoreClosed",
    "StoreWrite",
    "StoredEvents",
]
