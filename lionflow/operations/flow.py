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
gets exactly one terminal event, delivered even when it was cut short (see `_Runner._conclude`).
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.lowlevel
from pydantic import BaseModel

from lionflow.errors import FlowError, FlowValidationError, LionflowError, StreamConsumed
from lionflow.operations._fanin import FanIn, cancelled_from_outside, start_detached
from lionflow.operations.builder import Builder, Inputs, Operation, order_in_lanes, validate
from lionflow.operations.communicate import communicate
from lionflow.services.chunk import Chunk
from lionflow.services.response import Response
from lionflow.session.branch import Branch
from lionflow.session.session import Session

__all__ = ["FlowError", "FlowEvent", "FlowResults", "FlowStream", "flow", "flow_stream"]

OnError = Literal["fail_fast", "continue"]
EventKind = Literal["started", "completed", "failed", "skipped", "cancelled"]
_INTERNAL_PARAMETERS = frozenset({"instruction", "imodel", "branch", "context_from", "_model"})
DEFAULT_BUFFER = 256
_FATAL = (KeyboardInterrupt, SystemExit)  # a step raising these stops the flow and reaches the consumer


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """An operation's lifecycle, interleaved with its chunks: started, then exactly one of completed
    (with `result`), failed (with `error`), skipped (a dependency did not complete) or cancelled
    (the flow stopped before it finished).

    Its `str()` is empty, so a loop printing every item shows only the text.
    """

    kind: EventKind
    operation: Operation
    result: Any = None
    error: BaseException | None = None

    def __str__(self) -> str:
        return ""


class FlowResults(dict[str, Any]):
    """`{operation_id: result}` of the operations that completed, with what became of the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: dict[str, BaseException] = {}
        self.skipped: list[str] = []
        self.cancelled: list[str] = []


Item = tuple[str, Chunk | FlowEvent]

# The runners whose operations the current task belongs to (a step may run a flow of its own).
_INSIDE: contextvars.ContextVar[tuple[_Runner, ...]] = contextvars.ContextVar(
    "lionflow_flow_runners", default=()
)


def _context_value(result: Any) -> Any:
    if isinstance(result, Response):
        return result.parsed if result.parsed is not None else result.text
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    return result


class _Runner:
    """Runs the operations. Holds no reference to its FlowStream, so dropping the stream works."""

    def __init__(
        self,
        session: Session,
        operations: list[Operation],
        max_concurrent: int | None,
        on_error: OnError,
        buffer: int,
    ) -> None:
        self.session = session
        self.order = operations  # until prepare_branches: then a dependency order (see there)
        self.operations = {op.id: op for op in operations}
        self.max_concurrent = max_concurrent
        self.on_error = on_error
        self.channel: FanIn[Item] = FanIn(buffer)
        self.status: dict[str, str] = dict.fromkeys(self.operations, "pending")
        self.reported: set[str] = set()  # operations whose terminal event reached the buffer
        self.results = FlowResults()
        self.branches: dict[str, Branch] = {}
        self.previous: dict[str, str] = {}  # operation -> the one before it on its branch
        self.error: BaseException | None = None  # a failure of the runner itself
        self.fatal: BaseException | None = None  # a step's KeyboardInterrupt or SystemExit
        self.aborted = False
        self.stopped = False
        self.scope: anyio.CancelScope | None = None  # made by start(), in the event loop
        self.finished: anyio.Event | None = None

    def prepare_branches(self) -> None:
        """Named branches that do not exist yet are created; an operation without one gets its own.
        Operations on one branch are chained in the order they were added (an explicit dependency
        that says otherwise wins: `order_in_lanes`), each waiting for the one before."""
        known: dict[str, Branch] = {}
        for existing in self.session.branches:  # one pass: a lookup per operation must not scan
            known.setdefault(existing.id, existing)
            known.setdefault(existing.name, existing)
        for op in self.order:
            if op.kind != "communicate":
                continue
            name = op.parameters.get("branch")
            if name is None:
                name, count = op.name, 1
                while name in known:
                    count += 1
                    name = f"{op.name}-{count}"
            branch: Branch | None = known.get(name)
            if branch is None:
                branch = known[name] = self.session.create_branch(name)
                known.setdefault(branch.id, branch)
            self.branches[op.id] = branch
        self.order = order_in_lanes(self.order, {op_id: b.id for op_id, b in self.branches.items()})
        last_on: dict[str, str] = {}
        for op in self.order:
            branch = self.branches.get(op.id)
            if branch is not None:
                if branch.id in last_on:
                    self.previous[op.id] = last_on[branch.id]
                last_on[branch.id] = op.id

    def start(self) -> None:
        """Make what needs a running event loop; called by the stream just before `run`."""
        self.scope = anyio.CancelScope()
        self.finished = anyio.Event()
        self.done = {op_id: anyio.Event() for op_id in self.operations}
        self.limiter = anyio.CapacityLimiter(self.max_concurrent) if self.max_concurrent else None

    def stop(self) -> None:
        """Cancel everything and end the consumer's loop. Synchronous: safe from a loop callback."""
        self.stopped = True
        self.channel.close()  # first: whatever the runner still emits is dropped, not awaited
        if self.scope is None:  # never started
            self._conclude()
        elif self.finished is not None and not self.finished.is_set():
            self.scope.cancel()

    async def run(self) -> None:
        assert self.scope is not None
        assert self.finished is not None
        # The operations' tasks inherit this: an aclose() from inside one of them must not wait.
        _INSIDE.set((*_INSIDE.get(), self))
        try:
            with self.scope:
                async with anyio.create_task_group() as group:
                    self.group = group
                    for op in self.order:
                        group.start_soon(self._operation, op, name=f"lionflow operation {op.name}")
                for op_id, event in self._conclude():
                    await self._deliver(op_id, event)
        except BaseException as exc:  # a fault of the runner itself, handed to the consumer
            if isinstance(exc, GeneratorExit) or (
                isinstance(exc, anyio.get_cancelled_exc_class()) and cancelled_from_outside()
            ):
                raise
            self.error = exc
        finally:
            self._conclude()  # after a stop: recorded in the results, delivered to nobody
            self.channel.close()
            self.finished.set()

    def _conclude(self) -> list[tuple[str, FlowEvent]]:
        """Give every operation that has none a terminal status; return the terminal events not yet
        delivered. An event cut off by cancellation (a fail_fast stop while the buffer was full) is
        delivered here, after the task group, so none is lost and none is sent twice."""
        undelivered: list[tuple[str, FlowEvent]] = []
        for op in self.order:
            status = self.status[op.id]
            if status in ("pending", "running"):
                upstream_failed = any(self.status[d] in ("failed", "skipped") for d in op.depends_on)
                status = self.status[op.id] = "skipped" if upstream_failed else "cancelled"
                (self.results.skipped if upstream_failed else self.results.cancelled).append(op.id)
            if op.id not in self.reported:
                result, error = self.results.get(op.id), self.results.failed.get(op.id)
                undelivered.append((op.id, FlowEvent(status, op, result=result, error=error)))  # type: ignore[arg-type]
        return undelivered

    async def _deliver(self, op_id: str, event: FlowEvent) -> None:
        await self.channel.put((op_id, event))
        self.reported.add(op_id)

    async def _end(self, op: Operation, kind: EventKind, result: Any = None, error: Any = None) -> None:
        self.status[op.id] = kind
        if kind == "completed":
            self.results[op.id] = result
        elif kind == "failed":
            self.results.failed[op.id] = error
        elif kind == "skipped":
            self.results.skipped.append(op.id)
        await self._deliver(op.id, FlowEvent(kind, op, result=result, error=error))

    async def _operation(self, op: Operation) -> None:
        try:
            for dependency in op.depends_on:
                await self.done[dependency].wait()
            previous = self.previous.get(op.id)
            if previous is not None:  # an order, not a dependency: it runs whatever became of that one
                await self.done[previous].wait()
            if any(self.status[d] != "completed" for d in op.depends_on):
                await self._end(op, "skipped")
            elif self.limiter is not None:
                async with self.limiter:
                    await self._execute(op)
            else:
                await self._execute(op)
        finally:
            self.done[op.id].set()

    async def _execute(self, op: Operation) -> None:
        await self.channel.put((op.id, FlowEvent("started", op)))
        self.status[op.id] = "running"
        error: BaseException
        try:
            result = await (self._communicate(op) if op.kind == "communicate" else self._function(op))
        except anyio.get_cancelled_exc_class() as exc:
            if cancelled_from_outside():
                raise  # the flow is stopping: `_conclude` reports it as cancelled
            # The step raised a cancellation nobody sent it: its own failure, not a stop.
            error = LionflowError(f"operation {op.name!r} raised a cancellation the flow did not send")
            error.__cause__ = exc
        except Exception as exc:
            error = exc
        except _FATAL as exc:
            # Meant for the program, not the step: the flow stops and the consumer gets it.
            self.fatal = self.fatal or exc
            error = exc
        except BaseException as exc:
            # Any other BaseException (GeneratorExit, a library's own) is this step's failure; it
            # must not escape the runner's task, which would kill trio's run or be lost on asyncio.
            error = LionflowError(f"operation {op.name!r} raised {exc!r}")
            error.__cause__ = exc
        else:
            await self._end(op, "completed", result=result)
            return
        if self.on_error == "fail_fast" or self.fatal is not None:
            # Stop the others first: a slow consumer must not hold them running while it catches up.
            self.aborted = True
            self.group.cancel_scope.cancel()
        await self._end(op, "failed", error=error)

    async def _communicate(self, op: Operation) -> Response:
        parameters = op.parameters
        context = None
        if op.context_from:
            context = {self.operations[u].name: _context_value(self.results[u]) for u in op.context_from}
        params = {k: v for k, v in parameters.items() if k not in _INTERNAL_PARAMETERS}
        turn = communicate(
            self.session,
            self.branches[op.id],
            instruction=parameters["instruction"],
            imodel=parameters.get("_model") or parameters.get("imodel"),
            context=context,
            **params,
        )
        channel, op_id = self.channel, op.id
        try:
            async for chunk in turn:
                # The per-chunk path: a plain append, waiting only when the buffer is full.
                item = (op_id, chunk)
                if not channel.offer(item):
                    await channel.put(item)
        finally:
            # Leaving by cancellation, the turn must still close and record its partial answer now.
            with anyio.CancelScope(shield=True):
                await turn.aclose()
        if turn.response is None:
            raise LionflowError(f"operation {op.name!r} ended without a response")
        return turn.response

    async def _function(self, op: Operation) -> Any:
        assert op.function is not None
        takes_inputs = bool(inspect.signature(op.function).parameters)
        if takes_inputs:
            names = {self.operations[d].name: d for d in op.depends_on}
            inputs = Inputs({d: self.results[d] for d in op.depends_on}, names)
            outcome = op.function(inputs)
        else:
            outcome = op.function()
        return await outcome if inspect.isawaitable(outcome) else outcome


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

    def __init__(self, runner: _Runner) -> None:
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
        if runner in _INSIDE.get():
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
) -> FlowStream:
    """Run a workflow, yielding ``(operation_id, item)`` as things happen.

    Items are the chunks of every running operation as they arrive (in order within an operation),
    and `FlowEvent`s (started, then one of completed, failed, skipped, cancelled) whose `str()` is
    empty::

        async for operation_id, item in flow_stream(builder):
            print(item, end="", flush=True)

    The workflow is validated first (`FlowValidationError`). Operations run as soon as their
    dependencies have completed, except that operations naming the same branch run one after
    another in the order they were added. ``on_error="fail_fast"`` cancels the rest at the first
    failure and raises `FlowError` at the end; ``"continue"`` lets the others finish. Dependents of a
    failed operation are skipped. `max_concurrent` bounds the operations running at once; `buffer`
    bounds the items waiting for the consumer.
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
    runner = _Runner(session, operations, max_concurrent, on_error, buffer)
    runner.prepare_branches()
    return FlowStream(runner)


async def flow(
    source: Builder | Iterable[Operation],
    *,
    max_concurrent: int | None = None,
    on_error: OnError = "fail_fast",
) -> FlowResults:
    """Run a workflow to the end: ``{operation_id: result}`` (a communicate step's result is its
    `Response`). With ``"continue"``, `failed`, `skipped` and `cancelled` tell what did not complete;
    with ``"fail_fast"``, the first failure cancels the rest and raises `FlowError`."""
    async with flow_stream(source, max_concurrent=max_concurrent, on_error=on_error) as stream:
        async for _ in stream:
            pass
    return stream.results
