"""What `flow_stream` runs on: a bounded fan-in buffer, a runner started outside any task group, and
the test that tells a step's own stray cancellation from the flow being cancelled.

All three are backend-neutral (asyncio and trio); the one place that must ask which backend runs is
`start_detached`, because anyio has no task that outlives the caller's scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")

# asyncio keeps only weak references to tasks: a detached runner must be held until it ends.
_DETACHED: set[asyncio.Task[None]] = set()


class FanIn(Generic[T]):
    """A bounded buffer from many producers to one consumer, built on `anyio.Event`.

    The per-chunk path is `offer()`: a plain append when there is room, no checkpoint (the producer's
    own stream already yields to the loop), which is what keeps it as cheap as an `asyncio.Queue`; an
    anyio memory object stream checkpoints on every send. `put()` waits for room; an item is either
    appended or not, never both delivered and cancelled, so a caller knows whether an event was
    delivered. After `close()` the consumer drains what is left and then gets `anyio.EndOfStream`,
    and producers' items are dropped: nobody will read them.
    """

    __slots__ = ("_capacity", "_getter", "_items", "_putters", "closed")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._getter: anyio.Event | None = None
        self._putters: deque[anyio.Event] = deque()
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: T) -> bool:
        """Append `item` if there is room (or drop it once closed); False when full."""
        if self.closed:
            return True
        if len(self._items) >= self._capacity:
            return False
        self._items.append(item)
        getter = self._getter
        if getter is not None:
            self._getter = None
            getter.set()
        return True

    async def put(self, item: T) -> None:
        """Append `item`, waiting while the buffer is full."""
        while not self.offer(item):
            waiter = anyio.Event()
            self._putters.append(waiter)
            try:
                await waiter.wait()
            except BaseException:
                if waiter.is_set():  # the room it was woken for goes to the next producer
                    self._wake_putter()
                else:
                    self._putters.remove(waiter)
                raise

    def _wake_putter(self) -> None:
        if self._putters:
            self._putters.popleft().set()

    def poll(self) -> T | None:
        """The next item without waiting, or None when there is none (items are never None)."""
        if not self._items:
            return None
        item = self._items.popleft()
        if self._putters:
            self._putters.popleft().set()
        return item

    async def get(self) -> T:
        """The next item, waiting for one; `anyio.EndOfStream` once closed and drained."""
        while True:
            item = self.poll()
            if item is not None:
                return item
            if self.closed:
                raise anyio.EndOfStream
            getter = self._getter = anyio.Event()
            try:
                await getter.wait()
            finally:
                if self._getter is getter:
                    self._getter = None

    def close(self) -> None:
        """No more items: wake the consumer (it drains, then ends) and every waiting producer."""
        self.closed = True
        getter, self._getter = self._getter, None
        if getter is not None:
            getter.set()
        while self._putters:
            self._putters.popleft().set()


def start_detached(run: Callable[[], Awaitable[None]]) -> Callable[[Callable[[], None]], None]:
    """Start `run()` as a task of its own, outside any task group, and return a function that
    schedules a callback on this event loop from anywhere in this thread, a finalizer included.

    This is what lets the seed form ``async for ... in flow_stream(...)`` work without an ``async
    with``: a generator-like object cannot host a task group (PEP 789). `run` must handle its own
    errors and cancellation (the runner owns a cancel scope); both backends' versions are covered
    by the test suite, which runs on asyncio and trio.
    """
    try:
        loop = asyncio.get_running_loop()
        on_asyncio = asyncio.current_task() is not None
    except RuntimeError:
        on_asyncio = False
    if on_asyncio:

        async def main() -> None:
            await run()

        task = loop.create_task(main())
        _DETACHED.add(task)
        task.add_done_callback(_DETACHED.discard)

        def schedule_on_loop(callback: Callable[[], None]) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(callback)

        return schedule_on_loop

    import trio  # anyio's other backend

    token = trio.lowlevel.current_trio_token()
    trio.lowlevel.spawn_system_task(run, name="lionflow flow_stream", context=contextvars.copy_context())

    def schedule_on_trio(callback: Callable[[], None]) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # the run is over: so is the flow
            token.run_sync_soon(callback)

    return schedule_on_trio


def cancelled_from_outside() -> bool:
    """Inside an ``except`` for the backend's cancellation: was this task really cancelled?

    A step can raise a cancellation exception on its own (``raise asyncio.CancelledError()``, a
    future some library cancelled, a re-raised stale one): that is a failure of the step, not a
    request to stop. A real one comes from a cancelled scope around the task, which makes the
    effective deadline minus infinity, or, on asyncio, from ``task.cancel()``, which counts.
    """
    if anyio.current_effective_deadline() == -math.inf:
        return True
    try:
        task = asyncio.current_task()
    except RuntimeError:  # trio: every cancellation comes from a scope
        return False
    return task is not None and task.cancelling() > 0
