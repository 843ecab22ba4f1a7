"""A hub's streams written to its store, so that they outlive the process's memory of them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import anyio

from lionflow.errors import StoreError
from lionflow.serve._record import store_unavailable
from lionflow.serve._stream_log import StreamLog
from lionflow.session.stores.base import EventBatch, SessionStore, wait_for

_log = logging.getLogger("lionflow.serve")


class Saver:
    """Writes the events of a hub's streams to its store: batched (what arrived in
    `interval` seconds, all streams together, as one write), off the path of each event, and in
    order (a batch follows the one before it). A failed write is logged: the streams go on, only
    their resuming from the store after a restart may come short."""

    def __init__(self, store: SessionStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._unsaved: dict[str, StreamLog] = {}
        # Made by `saving`, in the server's event loop (the app may be made in another one).
        self._wake: anyio.Event | None = None

    def changed(self, log: StreamLog) -> None:
        self._unsaved[log.id] = log
        if self._wake is not None:
            self._wake.set()

    async def saving(self) -> None:
        while True:
            self._wake = anyio.Event()
            if not self._unsaved:
                await self._wake.wait()
            await anyio.sleep(self.interval)  # what arrives meanwhile joins the batch
            await self.save()

    async def save(self) -> None:
        logs, self._unsaved = self._unsaved, {}
        batches = []
        for log in logs.values():
            if log.failed is not None and not log.events:
                continue  # failed before its first event: its client got a status, nothing to replay
            batches.append(EventBatch(log.id, log.saved + 1, tuple(log.events[log.saved :]), log.done))
            log.saved = len(log.events)
        if not batches:
            return
        try:
            await wait_for(self.store.submit_events(tuple(batches)))
        except Exception:
            _log.exception("could not store the events of %d streams", len(batches))

    async def drop(self, *, older_than: float, live: Iterable[StreamLog] = ()) -> None:
        """Delete the streams whose last event is `older_than` seconds old, but not those `live` in
        this process: a stream silent for longer (a model thinking) still has followers to serve
        and must replay whole after a restart, so its stored time is brought up to now first (in
        the store's queue before the drop, which therefore sees it)."""
        touched = tuple(EventBatch(log.id, log.saved + 1) for log in live if log.saved and not log.done)
        before = datetime.fromtimestamp(time.time() - older_than, UTC)
        try:
            if touched:
                await wait_for(self.store.submit_events(touched))
            await self.store.drop_events(before=before)
        except Exception:
            _log.exception("could not drop expired streams from the store")

    async def load(self, stream_id: str) -> StreamLog | None:
        """The stream as stored (None if it is not), replayable up to its first missing event: a
        batch lost to a failed write must not shift the events after it to others' numbers."""
        try:
            stored = await self.store.load_events(stream_id)
        except StoreError:
            raise store_unavailable(f"read stream {stream_id[:80]!r}") from None
        if stored is None:
            return None
        log = StreamLog(stream_id)
        for number, event in enumerate(stored.events, 1):
            if not event.startswith(b"id: %d\n" % number):
                break
            log.events.append(event)
        log.saved = len(log.events)
        log.end()  # no task here produces it: replayed as far as stored, then ended
        return log
