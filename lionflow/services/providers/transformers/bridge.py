"""Generated text from the generation thread to the event loop, without either side blocking."""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import anyio

from lionflow._loop import thread_caller


class Bridge:
    """Items from the generation thread to the event loop; neither side ever blocks on the other.

    Each wake-up of the loop preempts the generation thread (the GIL, and torch's OpenMP workers
    on a busy CPU): about 0.2 ms of generation lost per wake-up, measured on the tiny model. So
    wake-ups are spaced: while pieces come faster than `interval` (10 ms, below a screen refresh),
    the consumer collects them for one interval at a time and they reach it joined, one wake-up
    per interval; a slower piece, as every token of a real model is, wakes it at once. The end of
    the stream and errors always wake it at once.

    The consumer waits on an `anyio.Event`; the generation thread has it set in the event loop
    (`lionflow._loop.thread_caller`), at most once per event, and only when the consumer is waiting
    and not already collecting. Each side writes before it reads (the thread appends its item, then reads the
    consumer's flags; the consumer sets its flags, then looks for items), so a piece is never left
    unannounced.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self._call_soon = thread_caller()
        self._items: deque[tuple[str, Any]] = deque()
        self._interval = interval
        self._event: anyio.Event | None = None  # the consumer's, while it waits
        self._signalled: anyio.Event | None = None  # the last event the thread had set
        self._collecting = False  # the consumer waits out an interval: text needs no wake-up
        self._fast = False  # pieces came faster than the interval: collect rather than wake
        self._last_wake = -math.inf

    def put(self, kind: str, value: Any) -> None:  # generation thread
        self._items.append((kind, value))
        if kind == "text" and self._collecting:
            return
        event = self._event
        if event is not None and event is not self._signalled:
            self._signalled = event
            self._call_soon(event.set)

    async def _wait(self) -> None:
        collect = self._fast
        while not self._items:
            event = self._event = anyio.Event()
            self._collecting = collect
            if self._items:
                break
            if collect:
                with anyio.move_on_after(self._interval):
                    await event.wait()
                # Nothing came in a whole interval: the pieces have slowed down, so the next one
                # wakes the loop itself.
                self._fast = collect = bool(self._items)
            else:
                await event.wait()
        self._event = None
        self._collecting = False
        now = time.monotonic()
        if now - self._last_wake < self._interval:
            self._fast = True
        self._last_wake = now

    async def get(self) -> tuple[str, Any]:
        """The next item: consecutive text pieces waiting together come joined, as one."""
        if not self._items:
            await self._wait()
        kind, value = self._items.popleft()
        if kind == "text" and self._items and self._items[0][0] == "text":
            pieces = [value]
            while self._items and self._items[0][0] == "text":
                pieces.append(self._items.popleft()[1])
            value = "".join(pieces)
        return kind, value
