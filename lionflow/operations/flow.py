"""`flow` and `flow_stream`: run a workflow, with the chunks of parallel operations interleaved.

A consumer's ``async for`` cannot host the task group that runs the operations (a generator must
not yield inside one, PEP 789), so the runner lives beside the consumer: in a task group that
``async with flow_stream(...)`` opens around its block, or, in the seed form (a bare ``async for``),
in a task of its own (`start_detached`). The two meet at one bounded `FanIn` buffer: chunks arrive
in order per operation and as they come across operations, and a slow consumer slows the producers
instead of growing memory. Stopping (``aclose()`` from any task, the end of the ``async with``
block, or dropping the stream) cancels the runner's scope: every running operation closes its
provider stream and records its partial turn, and the consumer's loop ends.

Ordering rules the runner adds to the DAG: operations that name the same branch run one after
another in the order they were added (so the branch reads as a conversation), and every operation
gets exactly one terminal event, delivered even when it was cut short (see `Runner._conclude`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType

import anyio
import anyio.abc
import anyio.lowlevel

from lionflow.errors import FlowError, FlowValidationError, StreamConsumed
from lionflow.operations._events import FlowResults, Item, OnError
from lionflow.operations._fanin import start_detached
from lionflow.operations._runner import DEFAULT_BUFFER, RUNNERS_HERE, Runner
from lionflow.operations.builder import Builder, Operation, validate
from lionflow.operations.executors.base import LOCAL, Executor
from lionflow.session.session import Session


class FlowStream:
    """The iterator `flow_stream` returns: ``(operation_id, item)`` pairs, each item a `Chunk` or a
    `FlowEvent`.

    ``async with flow_stream(...) as stream:`` runs the operations in a task group around the block
    and stops them when it ends; the bare ``async for`` form runs them in a task of its own, stopped
    when the loop ends or the stream is dropped. `aclose()` stops the flow from any task: the
    operations are cancelled, their partial turns recorded, and the consumer's loop ends::

        async with flow_stream(builder) as stream:
            stop_button.on_click(stream.aclose)    # another task may call it
            async for operation_id, item in stream:
                ...

    After the loop, `results` holds the `FlowResults`. A ``fail_fast`` flow that stopped at a
    failure raises `FlowError` once its events are delivered (not after `aclose()`: you stopped it).
    """

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._started = False
        self._closed = False
        self._reading = False  # a task is waiting for the next item: a second one is refused
        self._fatal_raised = False
        self._group: anyio.abc.TaskGroup | None = None
        self._schedule: Callable[[Callable[[], None]], None] | None = None  # the detached runner's loop

    @property
    def results(self) -> FlowResults:
        return self._runner.results

    def _start(self, group: anyio.abc.TaskGroup | None) -> None:
        self._started = True
        runner = self._runner
        runner.start()
        if group is not None:
            group.start_soon(runner.run, name="lionflow flow_stream")
        else:
            self._schedule = start_detached(runner.run)

    def __aiter__(self) -> FlowStream:
        return self

    async def __anext__(self) -> Item:
        if self._closed:
            raise StopAsyncIteration
        if not self._started:
            self._start(None)
        channel = self._runner.channel
        item = channel.poll()  # the per-chunk path: no wait, no bookkeeping
        if item is None:
            if self._reading:
                # Two readers would each wait for the same wake-up and one would never get it.
                raise StreamConsumed("another task is already reading this flow_stream; it has one reader")
            self._reading = True
            try:
                item = await channel.get()
            except anyio.EndOfStream:
                await self._finish()
                raise StopAsyncIteration from None
            except anyio.get_cancelled_exc_class():
                if self._group is None:
                    # The bare form has no block whose end stops the flow: a consumer cancelled
                    # while waiting has left the loop, so the flow stops now (not when gc runs).
                    await self._stop_and_wait()
                raise
            finally:
                self._reading = False
            if self._closed:  # aclose() from another task while this one waited
                raise StopAsyncIteration
        return item

    async def _finish(self) -> None:
        stopped_by_user = self._closed
        self._closed = True
        runner = self._runner
        assert runner.finished is not None
        with anyio.CancelScope(shield=True):  # the runner closes the buffer as its very last step
            await runner.finished.wait()
        self._raise_fatal()
        if stopped_by_user:
            return
        if runner.error is not None:
            raise runner.error
        if runner.aborted and runner.results.failed:
            failed = runner.results.failed
            names = ", ".join(runner.operations[op_id].name for op_id in failed)
            first = next(iter(failed.values()))
            message = f"the workflow stopped: operation {names} failed: {first!r}"
            raise FlowError(message, results=runner.results) from first

    def _raise_fatal(self) -> None:
        """Re-raise, once, a step's KeyboardInterrupt or SystemExit, now that the flow is down."""
        fatal = self._runner.fatal
        if fatal is not None and not self._fatal_raised:
            self._fatal_raised = True
            raise fatal

    async def aclose(self) -> None:
        """Stop the flow, from any task: cancel every running operation, wait until each has closed
        its provider stream and recorded its partial turn, and end the consumer's loop.

        From inside one of this flow's own steps it cannot wait for them (they include the caller):
        it stops the flow and returns at once, and the calling step is cancelled with the others."""
        self._closed = True
        runner = self._runner
        if runner in RUNNERS_HERE.get():
            runner.stop()
            await anyio.lowlevel.checkpoint()  # the caller's own cancellation arrives here
            return
        await self._stop_and_wait()

    async def _stop_and_wait(self) -> None:
        self._closed = True
        runner = self._runner
        runner.stop()
        if runner.finished is not None:
            with anyio.CancelScope(shield=True):
                await runner.finished.wait()

    def __del__(self) -> None:
        # Dropped mid-way in the seed form: stop the detached runner on the loop's next turn.
        if self._schedule is not None and not self._closed:
            self._schedule(self._runner.stop)

    async def __aenter__(self) -> FlowStream:
        if not self._started and not self._closed:
            group = anyio.create_task_group()
            await group.__aenter__()
            self._group = group
            self._start(group)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
        group, self._group = self._group, None
        if group is not None:
            # The runner has ended, so this only closes the group. The block's own exception is not
            # handed to it: anyio would wrap it in an ExceptionGroup; it propagates as it is.
            await group.__aexit__(None, None, None)
        if exc is None:
            self._raise_fatal()  # a block that did not read to the end still gets it


def _operations_of(source: Builder | Iterable[Operation]) -> tuple[Session | None, list[Operation]]:
    if isinstance(source, Builder):
        return source.session, source.operations
    operations = list(source)
    sessions = {id(op.session): op.session for op in operations if op.session is not None}
    if len(sessions) > 1:
        raise FlowValidationError("the operations come from builders of different sessions")
    return next(iter(sessions.values()), None), operations


def flow_stream(
    source: Builder | Iterable[Operation],
    *,
    max_concurrent: int | None = None,
    on_error: OnError = "fail_fast",
    buffer: int = DEFAULT_BUFFER,
    executor: Executor | None = None,
) -> FlowStream:
    """Run a workflow, yielding ``(operation_id, item)`` as things happen.

    Items are the chunks of every running operation as they arrive (in order within an operation),
    and `FlowEvent`s (started, then one of completed, failed, skipped, cancelled; an item stream's
    ``item`` events in between, in item order) whose `str()` is empty::

        async for operation_id, item in flow_stream(builder):
            print(item, end="", flush=True)

    The workflow is validated first (`FlowValidationError`). Operations run as soon as their
    dependencies have completed, except that operations naming the same branch run one after
    another in the order they were added. ``on_error="fail_fast"`` cancels the rest at the first
    failure and raises `FlowError` at the end; ``"continue"`` lets the others finish. Dependents of a
    failed operation are skipped. `max_concurrent` bounds the operations running at once; `buffer`
    bounds the items waiting for the consumer.

    `executor` says where each operation's model call or step runs: in this process (the default)
    or as a task on a Ray cluster (`RayExecutor`). The session, the turns and the events stay here,
    in the same order either way.
    """
    session, operations = _operations_of(source)
    if on_error not in ("fail_fast", "continue"):
        raise FlowValidationError(f"on_error must be 'fail_fast' or 'continue', not {on_error!r}")
    if max_concurrent is not None and max_concurrent < 1:
        raise FlowValidationError(f"max_concurrent must be >= 1, not {max_concurrent}")
    if buffer < 1:
        raise FlowValidationError(f"buffer must be >= 1, not {buffer}")
    session = session if session is not None else Session()
    validate(operations, session)
    runner = Runner(
        session, operations, max_concurrent, on_error, buffer, LOCAL if executor is None else executor
    )
    runner.prepare_branches()
    return FlowStream(runner)


async def flow(
    source: Builder | Iterable[Operation],
    *,
    max_concurrent: int | None = None,
    on_error: OnError = "fail_fast",
    executor: Executor | None = None,
) -> FlowResults:
    """Run a workflow to the end: ``{operation_id: result}`` (a communicate step's result is its
    `Response`). With ``"continue"``, `failed`, `skipped` and `cancelled` tell what did not complete;
    with ``"fail_fast"``, the first failure cancels the rest and raises `FlowError`. `executor`: see
    `flow_stream`."""
    async with flow_stream(
        source, max_concurrent=max_concurrent, on_error=on_error, executor=executor
    ) as stream:
        async for _ in stream:
            pass
    return stream.results
