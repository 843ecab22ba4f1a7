"""The runner behind `flow_stream`: it runs a workflow's operations in one task group and feeds
their chunks and events into the stream's `FanIn` buffer (see `lionflow.operations.flow`)."""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import AsyncGenerator
from typing import Any, cast

import anyio
import anyio.abc
import anyio.lowlevel

from lionflow.errors import LionflowError
from lionflow.operations._events import EventKind, FlowEvent, FlowResults, Item, OnError, context_value
from lionflow.operations._fanin import FanIn, cancelled_from_outside
from lionflow.operations._items import ItemBoard
from lionflow.operations.builder import Inputs, Operation, order_in_lanes
from lionflow.operations.communicate import communicate
from lionflow.operations.executors.base import LOCAL, Executor
from lionflow.services.response import Response
from lionflow.session.branch import Branch
from lionflow.session.session import Session

_INTERNAL_PARAMETERS = frozenset(
    {"instruction", "imodel", "branch", "context_from", "context_format", "_model"}
)
DEFAULT_BUFFER = 256
_FATAL = (KeyboardInterrupt, SystemExit)  # a step raising these stops the flow and reaches the consumer


class _SourceIncomplete(Exception):
    """A `for_each` operation's source failed or was skipped: it is skipped too."""


# The runners whose operations the current task belongs to (a step may run a flow of its own).
RUNNERS_HERE: contextvars.ContextVar[tuple[Runner, ...]] = contextvars.ContextVar(
    "lionflow_flow_runners", default=()
)


class Runner:
    """Runs the operations. Holds no reference to its FlowStream, so dropping the stream works."""

    def __init__(
        self,
        session: Session,
        operations: list[Operation],
        max_concurrent: int | None,
        on_error: OnError,
        buffer: int,
        executor: Executor = LOCAL,
    ) -> None:
        self.session = session
        self.executor = executor  # where the model calls and steps run; the rest runs here
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
        self.children: dict[str, list[Operation]] = {}  # a for_each operation's, as they start
        self.error: BaseException | None = None  # a failure of the runner itself
        self.fatal: BaseException | None = None  # a step's KeyboardInterrupt or SystemExit
        self.aborted = False
        self.stopped = False
        self.scope: anyio.CancelScope | None = None  # made by start(), in the event loop
        self.finished: anyio.Event | None = None
        self.board = ItemBoard(session, self.operations, self.branches, self._announce)

    def prepare_branches(self) -> None:
        """Named branches that do not exist yet are created; an operation without one gets its own
        (a `for_each` operation's children get theirs when they start). Operations on one branch
        are chained in the order they were added (an explicit dependency that says otherwise wins:
        `order_in_lanes`), each waiting for the one before."""
        known: dict[str, Branch] = {}
        for existing in self.session.branches:  # one pass: a lookup per operation must not scan
            known.setdefault(existing.id, existing)
            known.setdefault(existing.name, existing)
        for op in self.order:
            if op.kind != "communicate":
                continue
            name = op.parameters.get("branch")
            if name is None and op.for_each is not None:
                continue  # it does not talk: each of its children gets a branch of its own
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
        RUNNERS_HERE.set((*RUNNERS_HERE.get(), self))
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
        # A for_each operation comes after its children: its result is theirs, its event after theirs.
        for op in (member for top in self.order for member in (*self.children.get(top.id, ()), top)):
            status = self.status[op.id]
            if status in ("pending", "running"):
                # (`upstream`: a for_each operation whose source failed is skipped, as a dependent is)
                upstream_failed = any(self.status[d] in ("failed", "skipped") for d in op.upstream)
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
            elif self.limiter is not None and op.for_each is None:  # (its children take the slots)
                async with self.limiter:
                    await self._execute(op)
            else:
                await self._execute(op)
        finally:
            self.done[op.id].set()
            self.board.wake(op.id)  # whoever waits for its next item learns it has ended

    async def _execute(self, op: Operation) -> None:
        error: BaseException
        result: Any
        try:
            if op.for_each is not None:
                result = await self.fan_out(op)  # started by its first item
            else:
                await self._start(op)
                result = await (self._communicate(op) if op.kind == "communicate" else self._function(op))
        except _SourceIncomplete:
            await self._end(op, "skipped")
            return
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

    async def _announce(self, op: Operation, item: Any) -> None:
        await self.channel.put((op.id, FlowEvent("item", op, result=item)))

    async def fan_out(self, op: Operation) -> list[Any]:
        """Run `op` once per item of its `for_each` source, each child as soon as its item exists
        (bounded by `max_concurrent`, which the children hold, not `op`). `op` starts with its first
        item, or when its source completes with none. Its result is the children's results in item
        order; each is also one of its items, announced in that order as the children complete.
        Raises if a child failed, and `_SourceIncomplete` if the source did not complete."""
        source = op.for_each
        assert source is not None
        board = self.board
        children: list[Operation] = []
        announced = 0
        announcing = False  # one task announces at a time: two waiting on a full buffer could swap

        # Each child asks for a slot once the one before holds one: the limiter serves in the order
        # asked, but the children's tasks start in any order (trio's are shuffled), and a last item
        # run first would hold back every announcement of the parent.
        slotted: anyio.Event | None = None  # set once the newest child holds a slot (or never will)

        async def run_child(child: Operation, after: anyio.Event | None, holding: anyio.Event) -> None:
            nonlocal announced, announcing
            try:
                if self.limiter is not None:
                    if after is not None:
                        await after.wait()
                    async with self.limiter:
                        holding.set()
                        await self._execute(child)
                else:
                    await self._execute(child)
            finally:
                holding.set()
                self.done[child.id].set()
            if announcing:
                return  # the announcing task sees this child's result when it gets there
            announcing = True
            try:
                while announced < len(children) and announceable(children[announced]):
                    announced += 1
                    await board.emit(op, self.results[children[announced - 1].id])
            finally:
                announcing = False

        def announceable(child: Operation) -> bool:
            # Completed, and its own event delivered (`_end` sets the status before it waits for
            # room): the parent's item never reaches the consumer before the child's 'completed'.
            return self.status[child.id] == "completed" and child.id in self.reported

        async with anyio.create_task_group() as group:
            while True:
                items = board.items.get(source, ())
                while len(children) < len(items):
                    if not children:
                        await self._start(op)
                    child = board.add_child(op, len(children), items[len(children)])
                    self._register(op, child)
                    children.append(child)
                    after, slotted = slotted, anyio.Event()
                    group.start_soon(
                        run_child, child, after, slotted, name=f"lionflow operation {child.name}"
                    )
                if self.done[source].is_set():
                    break
                await board.signal(source).wait()
        if self.status[source] != "completed":
            raise _SourceIncomplete
        failed = [child for child in children if self.status[child.id] != "completed"]
        if failed:
            names = ", ".join(child.name for child in failed)
            error = LionflowError(f"operation {op.name!r}: {len(failed)} of {len(children)} failed: {names}")
            raise error from self.results.failed.get(failed[0].id)
        if not children:
            await self._start(op)
        return [self.results[child.id] for child in children]

    def _register(self, parent: Operation, child: Operation) -> None:
        self.operations[child.id] = child
        self.status[child.id] = "pending"
        self.done[child.id] = anyio.Event()
        self.children.setdefault(parent.id, []).append(child)  # for `_conclude`: one end each

    async def _start(self, op: Operation) -> None:
        await self.channel.put((op.id, FlowEvent("started", op)))
        self.status[op.id] = "running"

    async def _communicate(self, op: Operation) -> Response:
        parameters = op.parameters
        context = None
        if op.context_from:
            context = {self.operations[u].name: context_value(self.results[u]) for u in op.context_from}
        given = self.board.given.get(op.id)
        if given is not None:  # a for_each child: its item is its context
            context = context or {}
            key = self.operations[given.source].name
            if key in context:  # the whole source is there too (context_from): the item beside it
                key = f"{key}[{given.position}]"
            context[key] = context_value(given.item)
        rendered: Any = context
        if context is not None and parameters.get("context_format") == "toon":
            from lionflow.toon import encode  # (only a TOON context needs it)

            rendered = encode(context)  # a string: the instruction shows it as it is
        params = {k: v for k, v in parameters.items() if k not in _INTERNAL_PARAMETERS}
        parser = self.board.item_parser(op)
        turn = communicate(
            self.session,
            self.branches[op.id],
            instruction=parameters["instruction"],
            imodel=parameters.get("_model") or parameters.get("imodel"),
            context=rendered,
            executor=self.executor,
            **params,
        )
        channel, op_id = self.channel, op.id
        try:
            async for chunk in turn:
                # The per-chunk path: a plain append, waiting only when the buffer is full.
                item = (op_id, chunk)
                if not channel.offer(item):
                    await channel.put(item)
                if parser is not None:
                    for element in parser.feed_delta(chunk):
                        await self.board.emit(op, element)
        finally:
            # Leaving by cancellation, the turn must still close and record its partial answer now.
            with anyio.CancelScope(shield=True):
                await turn.aclose()
        if turn.response is None:
            raise LionflowError(f"operation {op.name!r} ended without a response")
        return turn.response

    async def _function(self, op: Operation) -> Any:
        assert op.function is not None
        takes_argument = bool(inspect.signature(op.function).parameters)
        given = self.board.given.get(op.id)
        args: tuple[Any, ...] = ()
        if given is not None:  # a for_each child gets its item
            args = (given.item,) if takes_argument else ()
        elif takes_argument:
            names = {self.operations[d].name: d for d in op.depends_on}
            args = (Inputs({d: self.results[d] for d in op.depends_on}, names),)
        outcome = self.executor.run_step(op.function, args)
        if inspect.isasyncgen(outcome):
            return await self.board.collect(op, cast("AsyncGenerator[Any, None]", outcome))
        return await outcome if inspect.isawaitable(outcome) else outcome
