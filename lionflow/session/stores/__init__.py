"""Session persistence: the store interface and the embedded SQLite default."""

from lionflow.session.stores.base import BranchWrite, SessionInfo, SessionSnapshot, SessionStore, StoreWrite
from lionflow.session.stores.sqlite import SCHEMA_VERSION, SQLiteStore, StoreClosed

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
