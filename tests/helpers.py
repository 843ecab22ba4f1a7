"""Assertions shared by the tests."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
