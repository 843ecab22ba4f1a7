"""`StreamingHandler`: receive a call's text as it is generated, and the full text at the end.

NeMo Guardrails' pattern, on anyio (either backend)::

    handler = StreamingHandler()

    async def show() -> None:
        async for text in handler:
            print(text, end="")

    async with anyio.create_task_group() as tg:
        tg.start_soon(show)
        response = await model.invoke(messages, streaming_handler=handler)
    full_text = await handler.wait()

The feeding side is three calls, made from the event loop's thread: `push` each piece of text as it
arrives, then exactly one of `finish` (the call ended normally) or `fail` (it raised, or was
cancelled). Between them the handler cuts the text at its `stop` strings and strips the wrapper given
to `set_pattern`; what survives is *released*: queued for the consumer, printed with
``enable_print``, forwarded to `set_pipe_to`'s handler and counted in `wait()`'s text.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Generic, Literal, TypedDict, cast, overload

import anyio
from typing_extensions import TypeVar

from lionflow.errors import StreamConsumed


class TextWithMetadata(TypedDict):
    """An item of a handler made with ``include_metadata=True``: the released text, and the metadata
    given to the `push` that released it."""

    text: str
    metadata: dict[str, Any]


# a bare `StreamingHandler` (in a signature that takes any) is `StreamingHandler[Any]`
ItemT = TypeVar("ItemT", default=Any)


class StreamingHandler(Generic[ItemT]):
    """An async iterator of a call's text as it is generated (``str``, or `TextWithMetadata` with
    ``include_metadata=True``); ``await handler.wait()`` gives all of it. Iterate it once, in one task.
    Its iteration ends on every outcome of the call: `finish`, `fail` (an error or a cancellation), a
    stop string, so a consumer task never waits forever. Nothing pushed after the end counts.
    ``stop``: the text is cut before the first stop string to be completed (as a provider's own stop
    would), and the iteration ends there (`stopped` is then true); text that could be the start of a
    stop string is held back until the next push tells. ``enable_print`` prints each released piece
    to stdout as it comes (and a newline at the end, if anything was printed).
    """

    @overload
    def __init__(
        self: StreamingHandler[str],
        *,
        enable_print: bool = False,
        include_metadata: Literal[False] = False,
        stop: Iterable[str] = (),
    ) -> None: ...
    @overload
    def __init__(
        self: StreamingHandler[TextWithMetadata],
        *,
        enable_print: bool = False,
        include_metadata: Literal[True],
        stop: Iterable[str] = (),
    ) -> None: ...
    def __init__(
        self, *, enable_print: bool = False, include_metadata: bool = False, stop: Iterable[str] = ()
    ) -> None:
        # No anyio object here: a handler may be made outside any loop; waiters make their events.
        self.enable_print = enable_print
        self.include_metadata = include_metadata
        self._pushed: list[str] = []  # the raw text, for finish(full_text)
        self.stop = stop  # validated by the setter
        self._prefix = ""
        self._suffix: str | None = None  # without its trailing whitespace: any after it goes too
        self._metadata: dict[str, Any] = {}
        self._stop_tail = ""  # held: it could be the start of a stop string
        self._head: str | None = ""  # held: it could still be the prefix; None once decided
        self._tail = ""  # held: it could be (the start of) the suffix
        self._tail_is_suffix = False  # _tail is the whole suffix, then only whitespace
        self._released: list[str] = []
        self._queue: deque[ItemT] = deque()
        self._wakeup: anyio.Event | None = None  # the consumer, waiting for an item
        self._done: anyio.Event | None = None  # wait()'s callers
        self._pipe: StreamingHandler[Any] | None = None
        self._error: BaseException | None = None
        self._ended = self._stopped = self._cancelled = self._iterated = self._printed = False

    @property
    def stop(self) -> tuple[str, ...]:
        """The stop strings. Set them (or give ``stop=``) before the first push."""
        return self._stop

    @stop.setter
    def stop(self, strings: Iterable[str]) -> None:
        stops = (strings,) if isinstance(strings, str) else tuple(strings)
        if any(not s for s in stops):
            raise ValueError("a stop string cannot be empty: it would cut the text before it starts")
        self._check_not_started("stop strings")
        self._stop = stops

    def set_pattern(self, prefix: str | None = None, suffix: str | None = None) -> None:
        """Strip a wrapper from the text: ``prefix`` when the text starts with it, ``suffix`` when the
        text ends with it (whitespace after the suffix goes too), e.g. ``set_pattern('"', '"')`` or
        ``set_pattern("```json\\n", "\\n```")``. Text that could still be the prefix or the suffix is
        held back until the next push tells. Call it before the first push."""
        self._check_not_started("the pattern")
        self._prefix, self._suffix = prefix or "", None if suffix is None else suffix.rstrip()

    def set_pipe_to(self, other: StreamingHandler[Any]) -> None:
        """Forward every released piece, in order, to `other` (through its own stop strings and
        pattern), and end it when this handler ends: `finish` (also after a stop string) or `fail`."""
        handler: StreamingHandler[Any] | None = other
        while handler is not None:
            if handler is self:
                raise ValueError("piping a StreamingHandler to itself (directly or not) would loop forever")
            handler = handler._pipe
        self._pipe = other
        for text in self._released:  # what this one released before it was piped
            other.push(text, self._metadata)
        if self._ended:
            self._end_pipe()

    @property
    def stopped(self) -> bool:
        """True when a stop string ended the text."""
        return self._stopped

    @property
    def done(self) -> bool:
        """True once the handler has ended (finish, fail or a stop string)."""
        return self._ended

    def push(self, text: str, metadata: Mapping[str, Any] | None = None) -> None:
        """Feed the next piece of the call's text. Never blocks. Ignored once the handler has ended."""
        if self._ended or not text:
            return
        self._pushed.append(text)
        self._metadata = dict(metadata or {})
        if not self._stop:
            self._strip_prefix(text)
            return
        pending = self._stop_tail + text
        # The stop string completed first wins; the text before it all held or new, so the scan is
        # over at most len(text) + the longest stop string: linear in the whole text.
        found = [(at + len(s), at) for s in self._stop if (at := pending.find(s)) >= 0]
        if found:
            self._stop_tail = ""
            self._strip_prefix(pending[: min(found)[1]])
            self._stopped = True
            self._end()
            return
        held = _held_back(pending, self._stop)
        self._stop_tail = pending[len(pending) - held :]
        self._strip_prefix(pending[: len(pending) - held])

    def finish(self, full_text: str | None = None) -> None:
        """End normally: text held back (a possible stop string, prefix or suffix) is decided and
        released, and the iteration ends. ``full_text``, the call's whole text, is for a call that
        pushed less than all of it (or nothing): what it adds to the pushed text is pushed first. It
        must start with the pushed text (`ValueError` otherwise, after ending). Ignored after the end."""
        if self._ended:
            return
        pushed = "".join(self._pushed)
        diverged = full_text is not None and not full_text.startswith(pushed)
        if full_text is not None and not diverged:
            self.push(full_text[len(pushed) :], self._metadata)
        if not self._stopped:  # (a stop string in the rest of full_text ended it)
            self._end()
        if diverged:
            raise ValueError("finish(full_text): full_text does not start with the text pushed before it")

    def fail(self, error: BaseException) -> None:
        """End because the call raised `error`. The iteration ends; text held back is dropped (it was
        never decided). `wait()` then raises `error`, unless it is a cancellation (the backend's
        cancellation, or ``GeneratorExit`` of a stream closed early): then `wait()` returns the text
        released so far. Ignored after the end."""
        if self._ended:
            return
        self._error = error
        try:
            cancelled_class: type[BaseException] = anyio.get_cancelled_exc_class()
        except Exception:  # no event loop running: then nothing was cancelled by it
            cancelled_class = GeneratorExit
        self._cancelled = isinstance(error, cancelled_class | GeneratorExit)
        self._end(decided=False)

    async def wait(self) -> str:
        """The text released, in full, once the handler has ended: the pushed text after the stop
        strings and the pattern, exactly what the consumer got. Raises what `fail` was given, unless
        that was a cancellation. May be awaited before, during or after the call, by any task."""
        if not self._ended:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()
        if self._error is not None and not self._cancelled:
            raise self._error
        return "".join(self._released)

    def __aiter__(self) -> StreamingHandler[ItemT]:
        if self._iterated:
            raise StreamConsumed("a StreamingHandler is iterated once; `await handler.wait()` gives its text")
        self._iterated = True
        return self

    async def __anext__(self) -> ItemT:
        while not self._queue:
            if self._ended:
                raise StopAsyncIteration
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        return self._queue.popleft()

    def _check_not_started(self, what: str) -> None:
        if self._pushed:
            raise RuntimeError(f"set {what} before the first push: text already released cannot be recalled")

    def _strip_prefix(self, text: str) -> None:
        if self._head is not None and self._prefix:
            head = self._head + text
            if len(head) < len(self._prefix) and self._prefix.startswith(head):
                self._head = head  # it may be the start of the prefix yet (or nothing came)
                return
            text = head.removeprefix(self._prefix)
        self._head = None
        self._strip_suffix(text)

    def _strip_suffix(self, text: str) -> None:
        if self._suffix is None:
            self._release(text)
            return
        if self._tail_is_suffix and text.isspace():
            self._tail += text  # whitespace after the suffix: held, without a rescan of the tail
            return
        pending = self._tail + text
        body = pending.rstrip()
        self._tail_is_suffix = body.endswith(self._suffix)
        if self._tail_is_suffix:
            held = len(pending) - len(body) + len(self._suffix)
        else:
            held = _held_back(pending, (self._suffix,))
        self._tail = pending[len(pending) - held :]
        self._release(pending[: len(pending) - held])

    def _release(self, text: str) -> None:
        if not text:
            return
        self._released.append(text)
        item = TextWithMetadata(text=text, metadata=dict(self._metadata)) if self.include_metadata else text
        self._queue.append(cast("ItemT", item))
        if self.enable_print:
            print(text, end="", flush=True)
            self._printed = True
        if self._pipe is not None:
            self._pipe.push(text, self._metadata)
        if self._wakeup is not None:
            self._wakeup.set()

    def _end(self, *, decided: bool = True) -> None:
        if decided:  # the held text is now known not to be a stop string, prefix or suffix
            self._strip_prefix(self._stop_tail)
            if self._head:  # shorter than the prefix: the text does not start with it
                head, self._head = self._head, None
                self._strip_suffix(head)
            if not self._tail_is_suffix:
                self._release(self._tail)
        self._ended = True
        if self._printed:
            print(flush=True)
        self._end_pipe()
        for event in (self._wakeup, self._done):
            if event is not None:
                event.set()

    def _end_pipe(self) -> None:
        if self._pipe is not None and self._error is None:
            self._pipe.finish()
        elif self._pipe is not None and self._error is not None:
            self._pipe.fail(self._error)


def _held_back(text: str, starts: tuple[str, ...]) -> int:
    """The length of the longest tail of `text` that is the start (not the whole) of one of `starts`:
    text to hold until the next piece tells whether it is one of them. Only a short tail is looked at."""
    longest = max(map(len, starts), default=1) - 1
    for length in range(min(len(text), longest), 0, -1):
        if any(start.startswith(text[-length:]) for start in starts):
            return length
    return 0
