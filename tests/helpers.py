"""Assertions shared by the tests."""

from __future__ import annotations

import gc
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path

import anyio
import anyio.lowlevel


@asynccontextmanager
async def no_task_left() -> AsyncIterator[None]:
    """Fails if the block leaves any task running (after letting stream finalizers run).

    anyio's task list works the same on asyncio and trio, so this check runs on both backends.
    """
    before = {task.id for task in anyio.get_running_tasks()}
    yield
    gc.collect()
    for _ in range(20):
        await anyio.lowlevel.checkpoint()
    stray = [task for task in anyio.get_running_tasks() if task.id not in before]
    assert not stray, f"tasks left running: {[task.name for task in stray]}"


@contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """Hold SQLite's write lock from another connection, as another process would."""
    with closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")


EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def run_example(name: str) -> str:
    """Run ``docs/examples/<name>`` as a user would (its own interpreter, from the repository's
    root); fails with its stderr if it does not exit cleanly, else returns what it printed."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES.parent.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
