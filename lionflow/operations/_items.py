"""Item streams between a flow's operations: what `Runner` keeps for pipelining.

An operation whose result is a list (a ``response_format=list[Model]`` reply, an async-generator
step, a ``for_each`` operation) announces each item the moment it is complete, and the operations
that run ``for_each`` of it start a child per item without waiting for the rest. `ItemBoard` holds
the items so far per operation and wakes whoever waits for the next one; the runner does the
scheduling (`Runner.fan_out`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, NamedTuple

import anyio

from lionflow.operations.builder import Operation, list_item_type_of
from lionflow.session.branch import Branch
from lionflow.session.session import Session
from lionflow.structured.items import ItemParser


class Given(NamedTuple):
    """What a `for_each` child runs on: the item at `position` in operation `source`'s items."""

    source: str
    position: int
    item: Any


Announce = Callable[[Operation, Any], Any]  # delivers an item's FlowEvent to the consumer (awaitable)


class ItemBoard:
    """Per operation: the items it has produced, in order, and a signal for the next one.

    `emit` appends an item, announces it and wakes the waiters; `wake` also runs when an operation
    ends, so a waiter learns that no more will come. Waiters read `items` up to where they are and
    wait on `signal`: nothing can happen between the read and the wait (no checkpoint), so no item
    is missed.
    """

    def __init__(
        self,
        session: Session,
        operations: Mapping[str, Operation],
        branches: dict[str, Branch],
        announce: Announce,
    ) -> None:
        self._session = session
        self._branches = branches
        self._announce = announce
        self.items: dict[str, list[Any]] = {}
        self._signals: dict[str, anyio.Event] = {}
        self._item_types = {
            op.id: item_type
            for op in operations.values()
            if (item_type := list_item_type_of(op, session)) is not None
        }
        self.given: dict[str, Given] = {}  # a for_each child's id -> what it was given

    def signal(self, op_id: str) -> anyio.Event:
        """Set when `op_id` produces its next item or ends."""
        signal = self._signals.get(op_id)
        if signal is None:
            signal = self._signals[op_id] = anyio.Event()
        return signal

    def wake(self, op_id: str) -> None:
        signal = self._signals.pop(op_id, None)
        if signal is not None:
            signal.set()

    async def emit(self, op: Operation, item: Any) -> None:
        """`op` produced `item`: keep it, announce it (``FlowEvent("item")``), wake the waiters."""
        self.items.setdefault(op.id, []).append(item)
        await self._announce(op, item)
        self.wake(op.id)

    def item_parser(self, op: Operation) -> ItemParser[Any] | None:
        """For a communicate operation with a list reply: the parser that finds its items."""
        item_type = self._item_types.get(op.id)
        return ItemParser(item_type) if item_type is not None else None

    async def collect(self, op: Operation, generator: AsyncGenerator[Any, None]) -> list[Any]:
        """Run an async-generator step: each value it yields is an item; the result is their list.
        The generator is closed however the step ends."""
        try:
            async for item in generator:
                await self.emit(op, item)
        finally:
            with anyio.CancelScope(shield=True):
                await generator.aclose()
        return list(self.items.get(op.id, ()))

    def add_child(self, parent: Operation, index: int, item: Any) -> Operation:
        """The operation that runs `parent` for its `index`-th item: same step, its own id
        (``"{parent}[{index}]"``) and name, and for a communicate step its own branch, a fork of
        the parent's branch when the parent has one."""
        assert parent.for_each is not None
        parameters = dict(parent.parameters)
        child = Operation(
            kind=parent.kind,
            name=f"{parent.name}[{index}]",
            parameters=parameters,
            context_from=list(parent.context_from),
            function=parent.function,
            id=f"{parent.id}[{index}]",
            session=parent.session,
        )
        self.given[child.id] = Given(parent.for_each, index, item)
        item_type = self._item_types.get(parent.id)
        if item_type is not None:
            self._item_types[child.id] = item_type
        if parent.kind == "communicate":
            self._branches[child.id] = self._child_branch(parent, child)
        return child

    def _child_branch(self, parent: Operation, child: Operation) -> Branch:
        session = self._session
        base = self._branches.get(parent.id)
        name, count = child.name, 1
        if base is not None:
            name = f"{base.name}[{child.name.rsplit('[', 1)[1]}"
        stem = name
        while session.has_branch(name):
            count += 1
            name = f"{stem}-{count}"
        return session.fork(base, name=name) if base is not None else session.create_branch(name)
