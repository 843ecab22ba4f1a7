"""Assertions shared by the tests."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


@asynccontextmanager
async def no_task_left() -> AsyncIterator[None]:
    """Fails if the block leaves any task running (after letting stream finalizers run)."""
    before = asyncio.all_tasks()
    yield
    gc.collect()
    for _ in range(20):
        await asyncio.sleep(0)
    stray = {task for task in asyncio.all_tasks() - before if not task.done()}
    assert not stray, f"tasks left running: {stray}"
