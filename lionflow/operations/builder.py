"""`Builder`: a workflow as a DAG of operations, validated before anything runs."""

from __future__ import annotations

import heapq
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lionflow.errors import FlowValidationError
from lionflow.services.imodel import iModel
from lionflow.session.branch import Branch
from lionflow.session.session import Session
from lionflow.structured.items import list_item_type


class Inputs(Mapping[str, Any]):
    """What a step receives: its dependencies' results, by operation name or id (or Operation)."""

    def __init__(self, results: dict[str, Any], names: dict[str, str]) -> None:
        self._results = results  # by id
        self._names = names  # name -> id

    def _id(self, key: Any) -> str:
        if isinstance(key, Operation):
            return key.id
        return str(self._names.get(key, key))

    def __getitem__(self, key: Any) -> Any:
        return self._results[self._id(key)]

    def __contains__(self, key: object) -> bool:
        return self._id(key) in self._results

    def __iter__(self) -> Any:
        names = {op_id: name for name, op_id in self._names.items()}
        return iter(names.get(op_id, op_id) for op_id in self._results)

    def __len__(self) -> int:
        return len(self._results)


@dataclass(eq=False)
class Operation:
    """One step of a workflow. Use it as a dependency (``depends_on=[op]``, ``context_from=[op]``)
    and as a key of `flow`'s results (``results[op.id]``).

    `parameters` holds what the step was built with (for a communicate step: ``instruction``,
    ``imodel``, ``branch``, ``context_from`` and generation parameters), as the seed reads it.
    """

    kind: Literal["communicate", "function"]
    name: str
    parameters: dict[str, Any]
    depends_on: list[str] = field(default_factory=list)
    context_from: list[str] = field(default_factory=list)
    function: Callable[..., Any] | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    session: Session | None = field(default=None, repr=False)
    for_each: str | None = None  # the operation whose items this one runs a child for, each

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def upstream(self) -> list[str]:
        """Every operation this one waits for in some way: its dependencies and its item source."""
        source = self.for_each
        return self.depends_on if source is None or source in self.depends_on else [*self.depends_on, source]

    def __repr__(self) -> str:
        return f"Operation({self.kind}, name={self.name!r}, depends_on={len(self.depends_on)})"


def _ids(refs: Iterable[Operation | str] | None) -> list[str]:
    result = []
    for ref in refs or ():
        if isinstance(ref, Operation):
            result.append(ref.id)
        elif isinstance(ref, str):
            result.append(ref)
        else:
            raise FlowValidationError(f"a dependency must be an Operation or its id, not {ref!r}")
    return result


class Builder:
    """Describe a workflow; `flow` or `flow_stream` runs it.

    ::

        builder = Builder(session=session)
        research = builder.communicate(instruction="List 3 benefits of exercise", imodel="gpt",
                                       branch="research")
        article = builder.communicate(instruction="Write a short article using these benefits",
                                      imodel="gpt", branch="article", context_from=[research])
        tally = builder.add(count_words, depends_on=[article])      # your own async function
        results = await flow(builder)                                # {operation_id: result}

    An operation runs as soon as everything it depends on has finished. `context_from` also
    depends on those operations and puts their results into the instruction's context.
    """

    def __init__(self, session: Session | None = None) -> None:
        self.session = session if session is not None else Session()
        self._operations: list[Operation] = []
        # Dicts and sets, not scans: building N operations stays linear.
        self._by_name: dict[str, Operation] = {}
        self._explicit: set[str] = set()  # names the caller chose; the others were generated
        self._suffix: dict[str, int] = {}  # the last suffix tried for a generated base name

    @property
    def operations(self) -> list[Operation]:
        """The operations in the order they were added."""
        return list(self._operations)

    def _name(self, name: str | None, fallback: str) -> str:
        """`name` if the caller gave one (a name given twice is an error), else a generated one:
        `fallback`, or ``fallback-2``, ``-3``... if that is taken. A generated name never takes a
        name given explicitly, before or after: an explicit name that an earlier operation only had
        as a generated one goes to the explicit operation, and the earlier one is renamed."""
        if not name:
            return self._generated(fallback)
        if name in self._explicit:
            raise FlowValidationError(f"an operation named {name!r} already exists in this workflow")
        self._explicit.add(name)
        holder = self._by_name.pop(name, None)
        if holder is not None:
            holder.name = self._generated(name)
            self._by_name[holder.name] = holder
        return name

    def _generated(self, base: str) -> str:
        candidate, count = base, self._suffix.get(base, 1)
        while candidate in self._by_name or candidate in self._explicit:
            count += 1
            candidate = f"{base}-{count}"
        if candidate != base:
            self._suffix[base] = count  # the next one for this base starts here: linear, not a rescan
        return candidate

    def _append(self, operation: Operation) -> Operation:
        self._operations.append(operation)
        self._by_name[operation.name] = operation
        return operation

    def communicate(
        self,
        instruction: str,
        *,
        imodel: iModel | str | None = None,
        branch: Branch | str | None = None,
        context_from: Iterable[Operation | str] | None = None,
        depends_on: Iterable[Operation | str] | None = None,
        name: str | None = None,
        for_each: Operation | str | None = None,
        **params: Any,
    ) -> Operation:
        """A `communicate` turn; its result is the `Response`. See `communicate` for the arguments.

        ``for_each=op`` makes it one turn per item of `op` (an operation with
        ``response_format=list[Model]``, an async-generator step, or another `for_each` operation):
        each turn starts as soon as its item exists, with the item as its context, on a branch of
        its own (a fork of `branch` when one is named). Its result is the list of the turns'
        `Response`s, in item order. What makes it wait for the whole source undoes the pipelining:
        naming the source in `depends_on` or `context_from`, or sharing its named branch (operations
        on one branch run one after another)."""
        if not isinstance(instruction, str) or not instruction:
            raise FlowValidationError("a communicate operation needs a non-empty instruction")
        if params.get("context_format", "json") not in ("json", "toon"):
            raise FlowValidationError(
                f"context_format must be 'json' or 'toon', not {params['context_format']!r}"
            )
        upstream = _ids(context_from)
        branch_name = branch.name if isinstance(branch, Branch) else branch
        fallback = branch_name if isinstance(branch_name, str) and not self._taken(branch_name) else None
        operation = Operation(
            kind="communicate",
            name=self._name(name, fallback or f"communicate-{len(self._operations) + 1}"),
            parameters={
                "instruction": instruction,
                "imodel": imodel.name if isinstance(imodel, iModel) else imodel,
                "branch": branch_name,
                "context_from": upstream,
                **params,
            },
            depends_on=list(dict.fromkeys([*_ids(depends_on), *upstream])),
            context_from=upstream,
            session=self.session,
            for_each=_source(for_each),
        )
        if isinstance(imodel, iModel):
            operation.parameters["_model"] = imodel
        return self._append(operation)

    def _taken(self, name: str) -> bool:
        return name in self._by_name or name in self._explicit

    def add(
        self,
        function: Callable[..., Awaitable[Any]] | Callable[..., AsyncIterator[Any]],
        *,
        depends_on: Iterable[Operation | str] | None = None,
        name: str | None = None,
        for_each: Operation | str | None = None,
    ) -> Operation:
        """A step running your own async function. If it takes an argument, it receives `Inputs`:
        the results of its dependencies by operation name or id.

        An async generator function is an item stream: each value it yields is an item (announced
        by a ``FlowEvent("item")``, ready for a `for_each` step), and its result is their list.
        ``for_each=op`` runs the function once per item of `op`, as soon as that item exists, with
        the item as its argument; its result is the list of the runs' results, in item order."""
        if not callable(function):
            raise FlowValidationError(f"add() needs an async function, not {function!r}")
        operation = Operation(
            kind="function",
            name=self._name(name, getattr(function, "__name__", None) or f"step-{len(self._operations) + 1}"),
            parameters={"function": getattr(function, "__qualname__", repr(function))},
            depends_on=list(dict.fromkeys(_ids(depends_on))),
            function=function,
            session=self.session,
            for_each=_source(for_each),
        )
        return self._append(operation)


def _source(ref: Operation | str | None) -> str | None:
    if ref is None:
        return None
    (source,) = _ids([ref])
    return source


def list_item_type_of(op: Operation, session: Session) -> Any | None:
    """The element type of a communicate operation's ``response_format=list[X]`` (its own, or its
    model's), or None: such an operation is an item stream."""
    if op.kind != "communicate":
        return None
    if "response_format" in op.parameters:
        return list_item_type(op.parameters["response_format"])
    model = op.parameters.get("_model")
    if model is None:
        name = op.parameters.get("imodel")
        if name is not None and name not in session.services:
            return None
        model = session.services.get(name) if len(session.services) else None
    return list_item_type(model.params.get("response_format")) if model is not None else None


def yields_items(op: Operation, session: Session) -> bool:
    """Whether `op` is an item stream: a list reply, an async-generator step, or a `for_each`."""
    if op.for_each is not None:
        return True
    if op.kind == "function":
        function = op.function
        return inspect.isasyncgenfunction(function) or inspect.isasyncgenfunction(
            getattr(function, "__call__", None)  # noqa: B004 (an object whose __call__ is one)
        )
    return list_item_type_of(op, session) is not None


def validate(operations: list[Operation], session: Session) -> list[Operation]:
    """Check a workflow before anything runs: unknown dependencies, cycles, unknown models.

    Returns the operations in a dependency order, in the order they were added where the
    dependencies allow (linear in the workflow's size, up to a heap's log). Raises
    `FlowValidationError` naming the culprit.
    """
    by_id = {op.id: op for op in operations}
    if len(by_id) != len(operations):
        raise FlowValidationError("the same operation appears twice in the workflow")
    for op in operations:
        for dependency in op.upstream:
            if dependency not in by_id:
                raise FlowValidationError(
                    f"operation {op.name!r} depends on {dependency!r}, which is not in this workflow"
                )
        if op.for_each is not None and not yields_items(by_id[op.for_each], session):
            source = by_id[op.for_each]
            raise FlowValidationError(
                f"operation {op.name!r} runs for each item of {source.name!r}, which produces no items: "
                "give it response_format=list[Model], make it an async generator step, or a for_each itself"
            )
        if op.kind == "communicate" and "_model" not in op.parameters:
            model = op.parameters.get("imodel")
            if model is None and not len(session.services):
                raise FlowValidationError(
                    f"operation {op.name!r} names no model and the session has none registered"
                )
            if model is not None and model not in session.services:
                known = ", ".join(session.services.names()) or "none"
                raise FlowValidationError(
                    f"operation {op.name!r} uses model {model!r}, which is not registered ({known})"
                )
    # Kahn's algorithm, taking the earliest-added ready operation first: the order keeps the order of
    # addition wherever the dependencies allow (operations sharing a branch run in this order), and
    # what remains once nothing more can be ordered sits on a cycle.
    index = {op.id: i for i, op in enumerate(operations)}
    waiting = {op.id: len(op.upstream) for op in operations}
    dependents: dict[str, list[str]] = {op.id: [] for op in operations}
    for op in operations:
        for dependency in op.upstream:
            dependents[dependency].append(op.id)
    ready = [index[op_id] for op_id, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[Operation] = []
    while ready:
        op = operations[heapq.heappop(ready)]
        ordered.append(op)
        for dependent in dependents[op.id]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, index[dependent])
    if len(ordered) != len(operations):
        stuck = [op.name for op in operations if waiting[op.id] > 0]
        raise FlowValidationError(f"the workflow has a cycle through: {', '.join(stuck)}")
    return ordered


def order_in_lanes(operations: list[Operation], lanes: Mapping[str, Hashable]) -> list[Operation]:
    """A dependency order of a validated workflow in which the operations of one lane (`lanes`
    maps an operation's id to its lane: the branch it talks on) come in the order they were
    listed, which for a `Builder` is the order they were added.

    Where an explicit dependency contradicts that (an operation depends on one listed after it on
    its lane), the dependency wins: that one is ordered first and the rest of the lane keeps its
    order. Linear in the workflow's size, up to a heap's log.
    """
    index = {op.id: i for i, op in enumerate(operations)}
    waiting = [len(op.upstream) for op in operations]
    dependents: list[list[int]] = [[] for _ in operations]
    members: dict[Hashable, list[int]] = {}  # a lane's operations in the order listed
    for i, op in enumerate(operations):
        for dependency in op.upstream:
            dependents[index[dependency]].append(i)
        lane = lanes.get(op.id)
        if lane is not None:
            members.setdefault(lane, []).append(i)
    head = dict.fromkeys(members, 0)  # per lane: the position of its earliest unordered operation
    parked: dict[Hashable, set[int]] = {lane: set() for lane in members}  # ready, waiting for its turn
    ready: list[int] = []  # ready and free to go, earliest listed first
    held: list[int] = []  # every parked one, for when nothing else can go (stale entries skipped)
    ordered: list[Operation] = []
    done = [False] * len(operations)

    def release(i: int) -> None:
        lane = lanes.get(operations[i].id)
        if lane is None or members[lane][head[lane]] == i:
            heapq.heappush(ready, i)
        else:
            parked[lane].add(i)
            heapq.heappush(held, i)

    for i, count in enumerate(waiting):
        if count == 0:
            release(i)
    while ready or held:
        if ready:
            i = heapq.heappop(ready)
        else:
            # Every ready operation waits for an earlier one on its lane, which waits (through
            # explicit dependencies) for it: the dependency wins, the earliest listed goes first.
            i = heapq.heappop(held)
            lane = lanes[operations[i].id]
            if i not in parked[lane]:
                continue
            parked[lane].discard(i)
        done[i] = True
        ordered.append(operations[i])
        for dependent in dependents[i]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                release(dependent)
        lane = lanes.get(operations[i].id)
        if lane is not None:
            line, position = members[lane], head[lane]
            while position < len(line) and done[line[position]]:
                position += 1
            head[lane] = position
            if position < len(line) and line[position] in parked[lane]:
                parked[lane].discard(line[position])
                heapq.heappush(ready, line[position])
    return ordered
