"""`StreamLog`: one answer's SSE events, numbered as they were produced, that its followers read."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator

import anyio

from lionflow.serve._sse import Failed

_EVENT_END = re.compile(rb"\n\n")


def _events(data: bytes) -> Iterator[bytes]:
    """The SSE events in `data`, each with its blank line."""
    start = 0
    for end in _EVENT_END.finditer(data):
        yield data[start : end.end()]
        start = end.end()
    if start < len(data):
        yield data[start:]


class StreamLog:
    """One answer's events, numbered from 1, as they were produced; `failed` when it failed before
    its first event; `done` once it ended."""

    def __init__(self, stream_id: str, *, changed: Callable[[StreamLog], None] | None = None) -> None:
        self.id = stream_id
        self.events: list[bytes] = []
        self.saved = 0  # the events written to the store (when the hub has one)
        self.background = False  # runs on when no one follows it (a background response)
        self._on_change = changed
        self.failed: Failed | None = None
        self.done = False
        self.ended_at = math.inf
        self.followers = 0
        self.leaves = 0  # times the last follower left: a grace timer acts only for its own leave
        # Made now, so that a client leaving before the producer task began still cancels it.
        self.scope = anyio.CancelScope()
        self._changed = anyio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
        if self._on_change is not None:
            self._on_change(self)

    async def send(self, item: bytes | Failed) -> None:
        if isinstance(item, Failed):
            if not self.events:
                self.failed = item
                self._wake()
                return
            item = item.event
        for event in _events(item):
            self.events.append(b"id: %d\n" % (len(self.events) + 1) + event)
        self._wake()

    def end(self) -> None:
        self.done = True
        self.ended_at = anyio.current_time()
        self._wake()

    async def changed(self) -> None:
        """Returns once an event was added or the stream ended."""
        await self._changed.wait()
