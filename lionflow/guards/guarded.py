"""`GuardedStream`: a provider's chunk stream behind output guards, the engine of `OutputGuard`
(see `lionflow.guards.output` for what the guards promise). A reader task reads the provider at its
own speed; each guard checks its windows in a task of its own; the model call reads what they
release."""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

import anyio

from lionflow._loop import spawn
from lionflow.errors import GuardViolation, ProviderTimeout
from lionflow.guards.output import GuardResult, OutputGuard, Window, verdict
from lionflow.services.chunk import Chunk


class _Watch:
    """One output guard's progress on one answer: the windows it was given, the text released
    behind its checks (`frontier`), and its verdict on a failure."""

    def __init__(self, guard: OutputGuard) -> None:
        self.guard = guard
        # A check that keeps state across windows gives each answer its own (`for_answer()`): one
        # guard may watch calls that overlap.
        for_answer = getattr(guard.check, "for_answer", None)
        self.check = for_answer() if callable(for_answer) else guard.check
        self.next_start = 0  # where its next window's new characters begin
        # What it lets through: held, the text its passed checks covered but the last `overlap`
        # characters (which the next window sees again); release-first, up to one window more.
        self.frontier = 0 if guard.mode == "hold" else guard.window
        self.failure: GuardResult | None = None
        self.queued: deque[Window] = deque()
        self.wake = anyio.Event()
        self.idle = True

    def passed(self, window: Window) -> None:
        if window.final:
            self.frontier = window.end
        elif self.guard.mode == "hold":
            self.frontier = window.end - self.guard.overlap
        else:
            self.frontier = window.end + self.guard.window


def _broken(guard: OutputGuard, error: Exception) -> GuardViolation:
    reason = f"the check failed: {type(error).__name__}: {error}"
    violation = GuardViolation(
        f"output guard {guard.name!r} could not check the answer: {reason}", guard=guard.name, reason=reason
    )
    violation.__cause__ = error
    return violation


# How long closing waits for the reader and the checks to end once cancelled (a sync check's
# thread is abandoned at once, so only an async check that ignores cancellation takes this long).
_CLOSE_GRACE = 5.0


class GuardedStream:
    """A provider's chunk stream behind output guards (see the module's docstring): what the model
    call reads instead of the provider's stream. A reader task reads the provider; each guard checks
    in a task of its own; `__anext__` hands out what has been released.

    `first_chunk` and `idle` (seconds, None for none) time the provider's reads, here where they
    happen: text held back for its checks is no gap of the provider's, so a caller must not time
    the reads of this stream for them (only the total). A provider that outlasts one raises
    `ProviderTimeout` (`provider` names it) from `__anext__`."""

    def __init__(
        self,
        stream: Any,
        guards: Sequence[OutputGuard],
        *,
        first_chunk: float | None = None,
        idle: float | None = None,
        provider: str | None = None,
    ) -> None:
        self._stream = stream
        self._first_chunk = first_chunk
        self._idle = idle
        self._provider = provider
        self._watches = [_Watch(guard) for guard in guards]
        self._received = 0  # characters received
        # The received text not yet released, from `_released` on, as the pieces it came in: a
        # string grown chunk by chunk is copied whole each time (quadratic while checks lag).
        self._held: deque[str] = deque()
        self._released = 0  # characters released
        self._pending: deque[tuple[int, Chunk]] = deque()  # non-text chunks by their text position
        self._out: deque[Chunk] = deque()
        self._provider_done = False
        self._error: BaseException | None = None
        self._stopped: tuple[OutputGuard, GuardResult] | None = None
        self._finished = False
        self._changed = anyio.Event()
        self._scopes: list[anyio.CancelScope] = []  # one per task: a scope is entered once
        self._cancelled = False
        self._tasks = 0
        self._all_done = anyio.Event()
        self._read_done = anyio.Event()
        self._started = False
        self._closed = False
        # (the text a window may still need: `overlap` characters before each guard's next one)
        self._window_text = ""
        self._window_tail: list[str] = []  # received since the last window was cut
        self._window_base = 0

    # -- tasks --------------------------------------------------------------------------------------

    def _start(self) -> None:
        self._started = True
        self._tasks = 1 + len(self._watches)
        spawn(self._read)
        for watch in self._watches:
            spawn(functools.partial(self._checking, watch))

    def _scope(self) -> anyio.CancelScope:
        scope = anyio.CancelScope()
        self._scopes.append(scope)
        if self._cancelled:
            scope.cancel()
        return scope

    def _cancel(self) -> None:
        self._cancelled = True
        for scope in self._scopes:
            scope.cancel()

    def _task_done(self) -> None:
        self._tasks -= 1
        if self._tasks == 0:
            self._all_done.set()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _read(self) -> None:
        phase: Literal["first_chunk", "idle"] = "first_chunk"
        try:
            with self._scope() as scope:
                # (one scope whose deadline moves with each chunk: no scope per read)
                if self._first_chunk is not None:
                    scope.deadline = anyio.current_time() + self._first_chunk
                async for chunk in self._stream:
                    if self._idle is not None:
                        phase, scope.deadline = "idle", anyio.current_time() + self._idle
                    elif phase == "first_chunk":
                        phase, scope.deadline = "idle", math.inf
                    self._take(chunk)
                    if self._stopped is not None:
                        break
                else:
                    self._provider_done = True
                    self._close_windows()
            if scope.cancelled_caught and not self._cancelled:  # a deadline, not a stop
                seconds = self._first_chunk if phase == "first_chunk" else self._idle
                assert seconds is not None
                self._error = ProviderTimeout(phase, seconds, provider=self._provider)
        except Exception as exc:  # the provider's error: the caller gets it
            self._error = exc
        finally:
            self._read_done.set()
            self._wake()
            self._task_done()

    async def _checking(self, watch: _Watch) -> None:
        try:
            with self._scope():
                while True:
                    while not watch.queued:
                        if self._provider_done and watch.next_start >= self._received and watch.idle:
                            return
                        await watch.wake.wait()
                        watch.wake = anyio.Event()
                    window = watch.queued.popleft()
                    watch.idle = False
                    try:
                        result = await verdict(watch.check, window, guard=watch.guard.name)
                    except Exception as exc:
                        # A check that breaks is the caller's error, not a pass; raised as the
                        # guard's, so that it is never taken for the provider's (an LLM judge's
                        # rate limit would have the driver resend the request the guard watches).
                        self._error = _broken(watch.guard, exc)
                        self._cancel()
                        self._wake()
                        return
                    watch.idle = True
                    if not result.passed:
                        watch.failure = result
                        if self._stopped is None:
                            self._stopped = (watch.guard, result)
                        self._cancel()
                        self._wake()
                        return
                    watch.passed(window)
                    self._wake()
        finally:
            self._wake()
            self._task_done()

    # -- receiving ----------------------------------------------------------------------------------

    def _take(self, chunk: Chunk) -> None:
        if chunk.type != "text" or not chunk.data:
            if chunk.type == "finish" or chunk.type == "usage":
                self._pending.append((-1, chunk))  # (after all the text, whenever it comes)
            else:
                self._pending.append((self._received, chunk))
            self._wake()
            return
        self._held.append(chunk.data)
        self._window_tail.append(chunk.data)
        self._received += len(chunk.data)
        for watch in self._watches:
            size = watch.guard.window
            while self._received - watch.next_start >= size:
                self._queue(watch, watch.next_start + size, final=False)
        self._wake()

    def _queue(self, watch: _Watch, end: int, *, final: bool) -> None:
        start = max(0, watch.next_start - watch.guard.overlap)
        if self._window_tail:
            self._window_text += "".join(self._window_tail)
            self._window_tail.clear()
        text = self._window_text[start - self._window_base : end - self._window_base]
        watch.queued.append(Window(text, start=start, final=final))
        watch.next_start = end
        watch.wake.set()
        self._trim()

    def _close_windows(self) -> None:
        for watch in self._watches:
            # Every answer with text ends with a window marked final, so that a check may judge
            # the whole (a JSON object left open): one ending exactly at a window's end gets one
            # of no new characters (its overlap only), its last full window not having been final.
            if self._received > 0:
                self._queue(watch, self._received, final=True)
            watch.wake.set()

    def _trim(self) -> None:
        # Keep only what a window may still need: `overlap` characters before each guard's next.
        keep = min((w.next_start - w.guard.overlap for w in self._watches), default=self._received)
        cut = max(0, keep) - self._window_base
        if cut > 4096:
            self._window_text = self._window_text[cut:]
            self._window_base += cut

    # -- releasing ----------------------------------------------------------------------------------

    def _frontier(self) -> int:
        return min((watch.frontier for watch in self._watches), default=self._received)

    def _release(self) -> None:
        frontier = min(self._frontier(), self._received)
        while True:
            # non-text chunks whose text before them is out
            while self._pending and 0 <= self._pending[0][0] <= self._released:
                self._out.append(self._pending.popleft()[1])
            if frontier <= self._released:
                break
            # up to the next non-text chunk, which goes out between the texts around it
            upto = self._pending[0][0] if self._pending and 0 <= self._pending[0][0] < frontier else frontier
            count = upto - self._released
            if count <= 0:
                break
            self._out.append(Chunk(type="text", data=self._unhold(count)))
            self._released = upto
        if self._all_checked() and self._released == self._received:
            while self._pending:
                self._out.append(self._pending.popleft()[1])
            self._finished = True

    def _unhold(self, count: int) -> str:
        """The next `count` held characters, taken off the held pieces."""
        parts: list[str] = []
        while count > 0:
            head = self._held[0]
            if len(head) <= count:
                parts.append(self._held.popleft())
                count -= len(head)
            else:
                parts.append(head[:count])
                self._held[0] = head[count:]
                count = 0
        return "".join(parts)

    def _all_checked(self) -> bool:
        return (
            self._provider_done
            and all(
                not watch.queued and watch.idle and watch.next_start >= self._received
                for watch in self._watches
            )
            and self._frontier() >= self._received
        )

    # -- the stream's side ---------------------------------------------------------------------------

    def __aiter__(self) -> GuardedStream:
        return self

    async def __anext__(self) -> Chunk:
        if not self._started:
            self._start()
        while True:
            if self._out:
                return self._out.popleft()
            if self._stopped is not None:
                return await self._stop()
            if self._error is not None:
                error, self._error = self._error, None
                self._finished = True
                raise error
            if self._finished:
                raise StopAsyncIteration
            changed = self._changed
            self._release()
            if self._out or self._finished:
                continue
            await changed.wait()

    async def _stop(self) -> Chunk:
        guard, result = self._stopped  # type: ignore[misc]
        self._stopped = None
        self._finished = True
        self._pending.clear()
        await self.aclose()
        if guard.on_violation == "raise":
            raise GuardViolation(
                f"output guard {guard.name!r} stopped the answer: {result.reason}",
                guard=guard.name,
                reason=result.reason,
            )
        metadata = {"guard": {"name": guard.name, "reason": result.reason}}
        return Chunk(type="finish", finish_reason="content_filter", metadata=metadata)

    async def aclose(self) -> None:
        """Stop the reader and the checks, and close the provider stream (bounded, shielded: it
        runs as the call ends, cancelled or not)."""
        if self._closed:
            return
        self._closed = True
        self._cancel()
        with anyio.move_on_after(_CLOSE_GRACE, shield=True):
            try:
                if self._started:  # the provider stream is closed once its reader has left it
                    await self._read_done.wait()
            finally:
                await self._stream.aclose()
            if self._started:
                await self._all_done.wait()
