"""`ReadWatch`: a call's idle and total timeouts, without a cancel scope per provider read."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NoReturn

import sniffio


class Interrupted(Exception):
    """Ends a provider read that a `ReadWatch` interrupted; never leaves the driver."""


def _raise_interrupted() -> NoReturn:
    raise Interrupted


class ReadWatch:
    AGAIN = 1.0  # seconds between interrupts of a read that waits on after one
    """Interrupts a call's reads of its provider from outside, without a cancel scope per read.

    A cancel scope costs several microseconds to enter and leave, and in a real stream nearly every
    read waits (the socket has no data yet), so one per read would dominate what the service layer
    costs per chunk. The driver instead marks each read: `task`, the reading task (a call may be read
    by one task, then another), `deadline`, the idle limit from now (the timer caps it with the total
    deadline), and `waiting`. One timer per call checks them: it wakes at the deadline, or at the
    earliest moment a later deadline could fall, and interrupts a read that has run past it.
    `interrupt()` (a stop from another task) does the same at once. A ready read costs the marks.

    Interrupting is what a cancel scope does underneath, aimed at the one read: on asyncio the task
    is cancelled, and `settle()` takes the cancellation back (``uncancel``) when it reaches the
    driver; on trio the read's wait is aborted as trio aborts it for a cancellation, and resumed
    with `Interrupted`. Either way the read unwinds through its own scopes in order. Only a task
    parked in a wait is interrupted: one about to run may be resuming with a cancellation of its
    own (the consumer's), which must reach it first and stay the consumer's. A read that takes the
    interrupt and waits again (a retry on any error, a swallowed cancellation) is interrupted again
    every `AGAIN` seconds, as a cancel scope would cancel it again; clean-up waits shorter than
    that are not cut short. The driver never yields to its consumer while a read is marked, so
    nothing of the consumer's runs under the watch (PEP 789).
    """

    __slots__ = (
        "_idle",
        "_total_at",
        "current_task",
        "deadline",
        "expired",
        "fired",
        "interrupted",
        "now",
        "task",
        "total_phase",
        "waiting",
    )

    def __init__(
        self,
        now: Callable[[], float],
        current_task: Callable[[], Any],
        *,
        idle: float | None,
        total_at: float | None,
    ) -> None:
        self.now = now  # the watch's clock: the event loop's (on trio it may be that less an offset)
        self.current_task = current_task
        self._idle = idle
        self._total_at = math.inf if total_at is None else total_at
        self.deadline = self._total_at  # of the current read, in the clock of `now()`
        self.total_phase = False  # it expired at the total deadline (else the idle one)
        self.task: Any = current_task()  # the task of the current read: the one to interrupt
        self.waiting = False  # the driver is in a read
        self.interrupted = False  # stopped or expired: the current read is abandoned
        self.expired = False
        self.fired = False  # the reading task was woken to be interrupted

    @property
    def timed(self) -> bool:
        return self._idle is not None or self._total_at != math.inf

    def interrupt(self) -> None:
        """Abandon the current read: a stop, or the deadline."""
        self.interrupted = True
        if self.waiting and not self.fired:
            self._wake()

    def _wake_again(self) -> None:
        # The task was not parked when it was to be woken: look again now that it has run.
        if self.waiting and not self.fired:
            self._wake()

    def settle(self, error: BaseException | None) -> bool:
        """End the mark of a read that ended by `error` (None: it ended otherwise while
        `interrupted`); True when the watch ended it, and `error` is not the driver's to raise."""
        self.waiting = False
        # (a read may report our interrupt as an error of its own)
        return self.interrupted and (error is None or isinstance(error, Exception))

    def close(self) -> None:
        """Stop the timer (the call has ended)."""

    def _next_check(self) -> float:
        # Called by the timer: interrupt an expired read, and say when to look again.
        now = self.now()
        if self.waiting:
            deadline = min(self.deadline, self._total_at)
            if now >= deadline:
                self.total_phase = deadline == self._total_at
                self.expired = True
                self.interrupt()
                return math.inf
            return deadline
        # No read now: a later one cannot end before the idle limit from now (or the total deadline).
        return self._total_at if self._idle is None else min(now + self._idle, self._total_at)

    def _wake(self) -> None:
        raise NotImplementedError


def _current_task_of(loop: Any) -> Callable[[], Any]:
    """asyncio.current_task for `loop`, as cheap as it comes: the driver asks once per chunk, and
    before Python 3.12 asyncio.current_task is Python code around a lookup in a C dict (0.5 us)."""
    import asyncio
    import functools
    import types

    current: Callable[[], Any] = asyncio.current_task
    tasks = getattr(asyncio.tasks, "_current_tasks", None)
    if not isinstance(current, types.BuiltinFunctionType) and isinstance(tasks, dict):
        return functools.partial(tasks.get, loop)
    return current


class _AsyncioWatch(ReadWatch):
    __slots__ = ("_again", "_cancels", "_fired", "_loop", "_timer")

    def __init__(self, *, idle: float | None, total_at: float | None) -> None:
        import asyncio

        self._loop = loop = asyncio.get_running_loop()
        # asyncio's own loop reads time.monotonic(); reading it directly saves a call per read
        now = time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        super().__init__(now, _current_task_of(loop), idle=idle, total_at=total_at)
        self._cancels = 0
        self._fired = 0  # the cancellations of the current read that are ours
        self._again: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        if self.timed:
            self._timer = self._loop.call_at(self._next_check(), self._on_timer)

    def _on_timer(self) -> None:
        at = self._next_check()
        self._timer = None if at == math.inf else self._loop.call_at(at, self._on_timer)

    def _wake(self) -> None:
        # Only a task parked on a pending future: a task about to run may resume with a
        # cancellation of its own, and if ours were added to it, the two would be one CancelledError
        # that `settle` could not tell apart (the consumer's would be taken). (`_fut_waiter` is
        # what anyio's own cancel delivery reads too.)
        task = self.task
        waiter = task._fut_waiter
        if waiter is None or waiter.done():
            self._loop.call_soon(self._wake_again)
            return
        if not self.fired:
            self._cancels = task.cancelling()
            self._fired = 0
            self.fired = True
            self._again = self._loop.call_later(self.AGAIN, self._interrupt_again)
        self._fired += 1
        task.cancel()

    def _interrupt_again(self) -> None:
        # The interrupted read still waits: it took the cancellation and waits on (see ReadWatch).
        self._again = None
        if self.waiting and self.fired:
            task = self.task
            waiter = task._fut_waiter
            if waiter is not None and not waiter.done():
                self._fired += 1
                task.cancel()
            self._again = self._loop.call_later(self.AGAIN, self._interrupt_again)

    def settle(self, error: BaseException | None) -> bool:
        if not self.fired:
            return super().settle(error)
        self.waiting = False
        self.fired = False
        if self._again is not None:
            self._again.cancel()
            self._again = None
        task = self.task
        for _ in range(self._fired):
            task.uncancel()
        if isinstance(error, self._cancelled()):
            # Another cancellation came with ours (the consumer's): it is not ours to take.
            return bool(task.cancelling() <= self._cancels)
        return error is None or isinstance(error, Exception)  # the read swallowed it, or reported it

    @staticmethod
    def _cancelled() -> type[BaseException]:
        import asyncio

        return asyncio.CancelledError

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._again is not None:
            self._again.cancel()
            self._again = None


def _trio_clock() -> tuple[Callable[[], float], float]:
    """The clock a `_TrioWatch` reads, and its offset: trio's time is that clock's plus the offset.

    trio.current_time() is three Python calls down to trio's SystemClock, ``offset +
    time.perf_counter()`` (0.2 us; the driver reads it once per chunk): with that clock the watch reads
    perf_counter itself (0.06 us). Any other clock (a MockClock, one of the user's, a subclass) is read
    through trio, as are all clocks where trio's internals are not as this expects."""
    import trio

    clock = trio.lowlevel.current_clock()
    try:
        from trio._core import _run
    except ImportError:  # pragma: no cover - a trio that moved its internals
        return trio.current_time, 0.0
    offset = getattr(clock, "offset", None)
    system = getattr(_run, "SystemClock", None)
    if (
        system is not None
        and type(clock) is system
        and type(offset) is float
        and getattr(_run, "perf_counter", None) is time.perf_counter
    ):
        return time.perf_counter, offset
    return trio.current_time, 0.0


def _trio_current_task() -> Callable[[], Any]:
    """trio.lowlevel.current_task, as cheap as it comes: the driver asks once per chunk.

    trio keeps the running task as an attribute of a thread-local (`GLOBAL_RUN_CONTEXT.task`), set
    before each step of a task; current_task() reads it in a Python frame, and a read of the
    thread-local's attribute goes through its per-thread dict. This thread's dict, read in C, is the
    cheapest (0.05 us less a chunk). Where trio's internals are not as this expects, current_task."""
    import functools
    import operator

    import trio

    current: Callable[[], Any] = trio.lowlevel.current_task
    try:
        from trio._core import _run
    except ImportError:  # pragma: no cover - a trio that moved its internals
        return current
    # (the thread's own dict: the run, and so every task of it, steps in this thread)
    slots = getattr(getattr(_run, "GLOBAL_RUN_CONTEXT", None), "__dict__", None)
    if not isinstance(slots, dict) or slots.get("task") is not current():
        return current  # pragma: no cover - as above
    return functools.partial(operator.getitem, slots, "task")


class _TrioWatch(ReadWatch):
    __slots__ = ("_again", "_offset", "_scope", "_token")

    def __init__(self, *, idle: float | None, total_at: float | None) -> None:
        import trio

        # The watch's clock may be trio's less an offset (see _trio_clock): its deadlines are kept
        # in that clock, and turned into trio's where the timer sleeps.
        now, self._offset = _trio_clock()
        if total_at is not None:
            total_at -= self._offset
        super().__init__(now, _trio_current_task(), idle=idle, total_at=total_at)
        self._token = trio.lowlevel.current_trio_token()
        self._scope: trio.CancelScope | None = None
        self._again: trio.CancelScope | None = None
        if self.timed:
            self._scope = trio.CancelScope()
            trio.lowlevel.spawn_system_task(self._run_timer, self._scope, name="lionflow read timer")

    async def _run_timer(self, scope: Any) -> None:
        import trio

        with scope:  # cancelled by close(), perhaps before this task began
            at = self._next_check()
            while at != math.inf:
                await trio.sleep_until(at + self._offset)
                at = self._next_check()

    def _wake(self) -> None:
        # As trio delivers a cancellation: abort the wait the task is parked in. A task that is not
        # parked is about to run; it may finish the read (the driver then sees `interrupted`) or
        # park again, so look again once it has run.
        task = self.task
        if task._abort_func is not None:
            if not self.fired:
                self.fired = True
                import trio

                self._again = trio.CancelScope()  # (a scope is entered once: not the timer's)
                trio.lowlevel.spawn_system_task(self._run_again, self._again, name="lionflow read interrupt")
            task._attempt_abort(_raise_interrupted)
        else:
            self._token.run_sync_soon(self._wake_again)

    async def _run_again(self, scope: Any) -> None:
        # The interrupted read still waits: it took `Interrupted` and waits on (see ReadWatch).
        import trio

        with scope:
            while True:
                await trio.sleep(self.AGAIN)
                if not (self.waiting and self.fired):
                    return
                if self.task._abort_func is not None:
                    self.task._attempt_abort(_raise_interrupted)

    def settle(self, error: BaseException | None) -> bool:
        # A cancellation of the consumer that came with a stop is delivered again by trio at the
        # consumer's next checkpoint, so the stop may take the read.
        self.waiting = False
        if not self.interrupted or error is None or isinstance(error, Exception):
            return self.interrupted
        import trio

        return isinstance(error, trio.Cancelled)

    def close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
        if self._again is not None:
            self._again.cancel()
            self._again = None


def trio_interrupts() -> bool:
    """Whether this trio has the parts of its Task that `_TrioWatch` uses to abort a wait (private:
    ``_abort_func``, ``_attempt_abort``; trio has had them since its first releases)."""
    import trio

    task = trio.lowlevel.Task
    return hasattr(task, "_attempt_abort") and hasattr(task, "_abort_func")


def read_watch(*, idle: float | None, total_at: float | None) -> ReadWatch | None:
    """A `ReadWatch` for the running event loop (`total_at` in its clock), or None on a trio
    without the parts it needs (`trio_interrupts`): the driver then puts each read in a cancel
    scope, slower but the same to the user, rather than fail on a trio upgrade."""
    if sniffio.current_async_library() == "trio":
        if not trio_interrupts():
            return None
        return _TrioWatch(idle=idle, total_at=total_at)
    return _AsyncioWatch(idle=idle, total_at=total_at)
