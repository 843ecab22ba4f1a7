"""Session persistence: the store interface and the embedded SQLite default."""

from lionflow.errors import StoreClosed
from lionflow.session.stores._sqlite_sql import SCHEMA_VERSION
from lionflow.session.stores.base import BranchWrite, SessionInfo, SessionSnapshot, SessionStore, StoreWrite
from lionflow.session.stores.sqlite import SQLiteStore

__all__ = [
    "SCHEMA_VERSION",
    "BranchWrite",
    "SQLiteStore",
    "SessionInfo",
    "SessionSnapshot",
    "SessionStore",
    "StoreClosed",
    "StoreWrite",
]
