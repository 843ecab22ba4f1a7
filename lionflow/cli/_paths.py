"""Where the commands keep their data by default."""

from __future__ import annotations

import os
from pathlib import Path


def default_db_path() -> Path:
    """The SQLite file `chat`, `compare --save` and `sessions` use without ``--db``:
    ``$XDG_DATA_HOME/lionflow/lionflow.db``, else ``~/.local/share/lionflow/lionflow.db``."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "lionflow" / "lionflow.db"
