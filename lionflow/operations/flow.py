"""`flow` and `flow_stream`: run a workflow, with the chunks of parallel operations interleaved.

A consumer's ``async for`` cannot host the task group that runs the operations (a generator must
not yield inside one, PEP 789), so `FlowStream` owns a runner task that does, and the two meet at
one bounded queue: chunks arrive in order per operation and as they come across operations, and a
slow consumer slows the producers instead of growing memory. Leaving the loop (``aclose()``, the
end of an ``async with`` block, or dropping the stream) cancels the runner, which cancels every
running operation; each records its partial turn as incomplete and closes its provider stream.

The queue is asyncio's: on the per-chunk path it costs a fraction of an anyio memory stream.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import anyio
from pydantic import BaseModel

from lionflow.errors import FlowError, FlowValidationError, LionflowError
from lionflow.operations.builder import Builder, Inputs, Operation, validate
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


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """An operation's lifecycle, interleaved with its chunks: started, completed (with `result`),
    failed (with `error`), skipped (a dependency did not complete) or cancelled (the flow stopped).

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


class _End:
    __slots__ = ()


_END = _End()


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
        self.operations = {op.id: op for op in operations}
        self.on_error = on_error
        self.queue: asyncio.Queue[tuple[str, Chunk | FlowEvent] | _End] = asyncio.Queue(maxsize=buffer)
        self.limiter = anyio.CapacityLimiter(max_concurrent) if max_concurrent else None
        self.done = {op.id: anyio.Event() for op in operations}
        self.status: dict[str, str] = dict.fromkeys(self.operations, "pending")
        self.results = FlowResults()
        self.branches: dict[str, Branch] = {}
        self.error: BaseException | None = None  # a failure of the runner itself
        self.aborted = False
        self.abandoned = False  # the consumer left: nobody reads the queue any more

    def prepare_branches(self) -> None:
        """Named branches that do not exist yet are created; an operation without one gets its own."""
        for op in self.operations.values():
            if op.kind != "communicate":
                continue
            name = op.parameters.get("branch")
            if name is None:
                base, count = op.name, 1
                name = base
                while self.session.has_branch(name):
                    count += 1
                    name = f"{base}-{count}"
            self.branches[op.id] = (
                self.session.get_branch(name)
                if self.session.has_branch(name)
                else self.session.create_branch(name)
            )

    async def _emit(self, op_id: str, item: Chunk | FlowEvent) -> None:
        await self.queue.put((op_id, item))

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as group:
                self.group = group
                for op in self.operations.values():
                    group.start_soon(self._operation, op)
            await self._report_unfinished()
        except BaseException as exc:
            if not isinstance(exc, anyio.get_cancelled_exc_class()):
                self.error = exc
            raise
        finally:
            if not self.abandoned:
                if not self.queue.full():
                    self.queue.put_nowait(_END)
                else:  # the consumer is still reading: the end waits for it like any chunk
                    with anyio.CancelScope(shield=True):
                        await self.queue.put(_END)

    async def _report_unfinished(self) -> None:
        for op in self.operations.values():
            if self.status[op.id] in ("pending", "running"):
                upstream_failed = any(self.status[d] in ("failed", "skipped") for d in op.depends_on)
                kind: EventKind = "skipped" if upstream_failed else "cancelled"
                self.status[op.id] = kind
                (self.results.skipped if kind == "skipped" else self.results.cancelled).append(op.id)
                await self._emit(op.id, FlowEvent(kind, op))

    async def _operation(self, op: Operation) -> None:
        try:
            for dependency in op.depends_on:
                await self.done[dependency].wait()
            if any(self.status[d] != "completed" for d in op.depends_on):
                self.status[op.id] = "skipped"
                self.results.skipped.append(op.id)
                await self._emit(op.id, FlowEvent("skipped", op))
                return
            if self.limiter is not None:
                async with self.limiter:
                    await self._execute(op)
            else:
                await self._execute(op)
        finally:
            self.done[op.id].set()

    async def _execute(self, op: Operation) -> None:
        self.status[op.id] = "running"
        await self._emit(op.id, FlowEvent("started", op))
        try:
            result = await (self._communicate(op) if op.kind == "communicate" else self._function(op))
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            self.status[op.id] = "failed"
            self.results.failed[op.id] = exc
            await self._emit(op.id, FlowEvent("failed", op, error=exc))
            if self.on_error == "fail_fast":
                self.aborted = True
                self.group.cancel_scope.cancel()
            return
        self.status[op.id] = "completed"
        self.results[op.id] = result
        await self._emit(op.id, FlowEvent("completed", op, result=result))

    def _inputs(self, op: Operation, ids: Iterable[str]) -> Inputs:
        return Inputs(
            {op_id: self.results[op_id] for op_id in ids},
            {self.operations[i].name: i for i in self.operations},
        )

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
        queue, op_id = self.queue, op.id
        try:
            async for chunk in turn:
                # The per-chunk path: straight into the queue, waiting only when it is full.
                if queue.full():
                    await queue.put((op_id, chunk))
                else:
                    queue.put_nowait((op_id, chunk))
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
        outcome = op.function(self._inputs(op, op.depends_on)) if takes_inputs else op.function()
        return await outcome if inspect.isawaitable(outcome) else outcome


class FlowStream:
    """The iterator `flow_stream` returns: ``(operation_id, item)`` pairs, each item a `Chunk` or a
    `FlowEvent`. Use ``async with`` (or ``await stream.aclose()``) for prompt cleanup; a stream
    dropped mid-way cancels its operations too, on the next turn of the event loop.

    After the loop, `results` holds the `FlowResults`. A ``fail_fast`` flow that stopped at a
    failure raises `FlowError` once its events are delivered.
    """

    def __init__(self, runner: _Runner) -> None:
        self._runner = runner
        self._task: asyncio.Task[None] | None = None
        self._finished = False

    @property
    def results(self) -> FlowResults:
        return self._runner.results

    def __aiter__(self) -> FlowStream:
        return self

    async def __anext__(self) -> tuple[str, Chunk | FlowEvent]:
        if self._task is None:
            if self._finished:
                raise StopAsyncIteration
            self._task = asyncio.get_running_loop().create_task(self._runner.run())
        item = await self._runner.queue.get()
        if item is _END:
            await self._finish()
            raise StopAsyncIteration
        return item  # type: ignore[return-value]

    async def _finish(self) -> None:
        self._finished = True
        task, self._task = self._task, None
        if task is not None:
            with anyio.CancelScope(shield=True):
                await asyncio.gather(task, return_exceptions=True)
        runner = self._runner
        if runner.error is not None:
            raise runner.error
        if runner.aborted and runner.results.failed:
            failed = runner.results.failed
            names = ", ".join(runner.operations[op_id].name for op_id in failed)
            first = next(iter(failed.values()))
            message = f"the workflow stopped: operation {names} failed: {first!r}"
            raise FlowError(message, results=runner.results) from first

    async def aclose(self) -> None:
        """Stop the flow: cancel every running operation and wait until they have cleaned up."""
        task = self._task
        self._finished = True
        self._runner.abandoned = True
        if task is not None and not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.gather(task, return_exceptions=True)
        self._task = None

    def __del__(self) -> None:
        task = self._task
        if task is not None and not task.done():
            self._runner.abandoned = True
            task.cancel()

    async def __aenter__(self) -> FlowStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


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
    and `FlowEvent`s (started, completed, failed, skipped, cancelled) whose `str()` is empty::

        async for operation_id, item in flow_stream(builder):
            print(item, end="", flush=True)

    The workflow is validated first (`FlowValidationError`). ``on_error="fail_fast"`` cancels the
    rest at the first failure and raises `FlowError` at the end; ``"continue"`` lets independent
    operations finish. Dependents of a failed operation are skipped. `max_concurrent` bounds the
    operations running at once; `buffer` bounds the chunks waiting for the consumer.
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
