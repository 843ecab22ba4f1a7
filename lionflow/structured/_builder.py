"""`PartialBuilder`: partial pydantic objects from the value of an incremental parser, built incrementally.

See `lionflow.structured.partial_model` for what a partial object shows; this module is the machinery:
per update, the containers still open are rebuilt from what earlier updates kept (final children are
built once), with each annotation's decisions compiled once (`lionflow.structured._plan`); while the
one change is a string growing, only the open path down to it is rebuilt.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from lionflow.structured._plan import (
    DICT_AS_IS,
    DICT_MAPPING,
    DICT_OBJECT,
    LIST_FIXED,
    LIST_SEQUENCE,
    FieldPlan,
    ModelPlan,
    Plan,
)

M = TypeVar("M", bound=BaseModel)

_MISSING = object()
_PENDING: Any = object()  # the fingerprint of a path build, made only when a full build needs it


class _Open:
    """What is kept for a container still being written: its children built so far, and what the
    last build saw of it (so that a string growing inside it rebuilds only the path down to it)."""

    __slots__ = (
        "built",
        "field",
        "fields",
        "item",
        "last_key",
        "length",
        "model",
        "output",
        "settled",
        "settled_output",
        "size",
    )

    def __init__(self, output: Any) -> None:
        self.size = 0  # fields or items shown at the last build
        self.output = output  # the list handed out, growing in place
        self.settled = 0  # elements of the value already final (all but the last)
        self.settled_output = 0  # their built items in `output`
        self.built: dict[str, Any] = {}  # for objects: final fields by name
        self.length = -1  # the container's length at the last build
        # objects: the model, the fields shown, the newest key and its field (None: not a field)
        self.model: ModelPlan | None = None
        self.fields: dict[str, Any] = {}
        self.last_key: Any = _MISSING
        self.field: FieldPlan | None = None
        self.item: Plan | None = None  # lists: the elements' plan


class PartialParser(Protocol):
    """What `PartialBuilder` reads of an incremental parser (`PartialJSON`, `lionflow.toon.PartialTOON`):
    the value so far, the containers still being written (outermost first; one that is not listed is
    final and built once), whether the newest value of the innermost one is a string still growing,
    and a revision that changes whenever the value does."""

    @property
    def value(self) -> Any: ...
    @property
    def in_string(self) -> bool: ...
    @property
    def path_depth(self) -> int: ...
    @property
    def revision(self) -> int: ...
    def open_containers(self) -> list[Any]: ...


class PartialBuilder(Generic[M]):
    """Turns successive `PartialJSON` values into partial `model` instances."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self._plan = Plan(model)  # compiled once; the model's fields are compiled with the class
        self._open: dict[int, _Open] = {}
        self._final: dict[int, Any] = {}  # closed containers, built once
        self._placed: Any = _MISSING  # the newest leaf value placed into the object
        self._fingerprint: Any = None
        self._open_ids: set[int] = set()
        self._leaf_in: int | None = None  # the open container whose newest value is a growing string
        self._innermost: int | None = None
        self._structure: Any = None  # the parser's structure count at the last build
        self._frames: list[tuple[Any, _Open]] | None = None  # the open path, while only a string grows

    def build(self, parser: PartialParser) -> M | None:
        """The partial object, or None when nothing a `model` shows has changed since last time."""
        value = parser.value
        if not isinstance(value, dict):
            return None
        # A parser that counts its structure (`PartialJSON.structure`) says when the one change is
        # the string being written; for another, the path is compared container by container.
        structure = getattr(parser, "structure", None)
        if self._leaf_in is not None and parser.in_string:
            frames = self._frames
            # (the root compared too: a count is only comparable within one parser's document)
            if (
                frames is None
                or structure is None
                or structure != self._structure
                or frames[0][0] is not value
            ):
                frames = self._frames = self._path_frames(parser.open_containers())
            if frames is not None:
                self._structure = structure
                return self._grow(frames)
        self._structure = structure
        if self._fingerprint is _PENDING:
            self._fingerprint = self._fingerprint_now(None)  # as the last (path) build left it
        self._frames = None
        self._placed = _MISSING
        opened = parser.open_containers()
        self._open_ids = open_ids = set(map(id, opened))
        self._innermost = innermost = id(opened[-1]) if opened else None
        self._leaf_in = innermost if parser.in_string else None
        result = self._value(self._plan, value, True)
        # forget the state of containers that closed since
        states = self._open
        for key in [k for k in states if k not in open_ids]:
            del states[key]
        # growth inside a container not tracked here (a dict field, an Any value) shows by revision
        untracked = innermost is not None and innermost not in states
        fingerprint = self._fingerprint_now(parser.revision if untracked else None)
        if fingerprint == self._fingerprint or not isinstance(result, self.model):
            return None
        self._fingerprint = fingerprint
        return result

    def _fingerprint_now(self, revision: int | None) -> tuple[Any, ...]:
        # Containers still growing are shared with earlier objects, so comparing objects cannot tell
        # a change; the sizes of the open containers and the newest leaf can, cheaply.
        sizes = tuple([state.size for state in self._open.values()])
        return (sizes, len(self._final), self._placed, revision)

    def _path_frames(self, opened: list[Any]) -> list[tuple[Any, _Open]] | None:
        """The open containers with what the last build kept of each, when they are the ones the
        last build saw, as it saw them, ending in the string it saw growing; else None."""
        if not opened or id(opened[-1]) != self._leaf_in or len(opened) != len(self._open_ids):
            return None
        states = self._open
        frames = []
        for container in opened:
            state = states.get(id(container))
            if state is None or state.length != len(container):
                return None
            if state.model is not None:
                if state.field is None or next(reversed(container)) != state.last_key:
                    return None
            elif state.item is None:
                return None
            frames.append((container, state))
        return frames

    def _grow(self, frames: list[tuple[Any, _Open]]) -> M | None:
        """What a full build returns when the one change since the last build is the string being
        written at the end of the innermost container: each open container on the path is rebuilt
        from what the last build kept, with only its newest child replaced. The open containers and
        the closed ones are those of the last build, so the fingerprint can differ from the last one
        only in the sizes along the path and the newest leaf: those are compared, and the fingerprint
        itself is left to be made when a full build needs it."""
        container, state = frames[-1]
        # the string, as the innermost container's plan shows it
        if state.model is not None:
            field = state.field
            assert field is not None
            child: Any = field.plan.leaf(container[state.last_key], False)
        else:
            assert state.item is not None
            child = state.item.leaf(container[-1], False)
        previous = self._placed
        placed: Any = _MISSING
        changed = False
        innermost = True  # the string's own container: the one that places it
        for _, state in reversed(frames):
            model = state.model
            size = state.size
            if model is None:  # a list: its newest element replaced, in the shared list
                output: list[Any] = state.output
                del output[state.settled_output :]
                if child is not None:
                    output.append(child)
                    if innermost:
                        placed = child
                state.size = len(output)
                child = output
            else:
                field = state.field
                assert field is not None
                fields = state.fields.copy()
                default = field.factory() if field.factory is not None else field.default
                if child is None or child == default:
                    fields.pop(field.name, None)
                else:
                    fields[field.name] = child
                    if innermost:
                        placed = child
                state.fields = fields
                state.size = len(fields)
                child = model.construct(fields)
            changed = changed or state.size != size
            innermost = False
        self._placed = placed
        if self._fingerprint is not _PENDING:
            previous = self._fingerprint[2] if self._fingerprint is not None else _MISSING
        if not (changed or placed != previous) or not isinstance(child, self.model):
            return None
        self._fingerprint = _PENDING
        return child

    def _value(self, plan: Plan, value: Any, complete: bool) -> Any:
        if isinstance(value, dict):
            kind = plan.on_dict
            if kind == DICT_OBJECT:
                return self._object(plan.model_plan(), value)
            if kind == DICT_MAPPING:
                return self._mapping(plan.item(), value)
            if kind == DICT_AS_IS:
                return value
            return value if complete else None
        if isinstance(value, list):
            kind = plan.on_list
            if kind == LIST_SEQUENCE:
                return self._sequence(plan.item(), value)
            if kind == LIST_FIXED:
                # fixed-shape or unordered containers appear once complete, as their own type
                return None if id(value) in self._open_ids else plan.fixed(value)
            return value if complete else None
        return plan.leaf(value, complete)

    def _object(self, model: ModelPlan, value: dict[str, Any]) -> BaseModel:
        key = id(value)
        final = self._final.get(key)
        if final is not None:
            return final  # type: ignore[no-any-return]
        state: _Open | None = None
        if key in self._open_ids:
            state = self._open.get(key)
            if state is None:
                state = self._open[key] = _Open(None)
            built_before = state.built
            growing_at = len(value) - 1
        else:
            built_before = {}
            growing_at = -1
        fields: dict[str, Any] = {}
        by_key = model.by_key
        leaf_here = self._leaf_in == key
        for position, json_key in enumerate(value):
            field = by_key.get(json_key)
            if field is None:
                continue
            name = field.name
            growing = position == growing_at
            if not growing and name in built_before:
                fields[name] = built_before[name]
                continue
            item = value[json_key]
            built = self._value(field.plan, item, not (growing and leaf_here))
            default = field.factory() if field.factory is not None else field.default
            if item is None and default is not None and field.allows_none:
                built = None  # an explicit null where the field takes one: shown, not the default
            elif built is None or built == default:
                continue  # nothing to show yet: the field reads as missing, its default stays
            fields[name] = built
            if growing:
                if not isinstance(built, BaseModel | list | dict):  # containers record their own leaves
                    self._placed = built
            elif state is not None:
                built_before[name] = built
        instance = model.construct(fields)
        if state is not None:
            state.size = len(fields)
            state.length = len(value)
            state.model = model
            state.fields = fields
            state.last_key = next(reversed(value), _MISSING)
            state.field = by_key.get(state.last_key)
        else:
            self._final[key] = instance
        return instance

    def _sequence(self, item: Plan, value: list[Any]) -> list[Any]:
        key = id(value)
        final = self._final.get(key)
        if final is not None:
            return final  # type: ignore[no-any-return]
        if key not in self._open_ids:
            built = [self._value(item, element, True) for element in value]
            built = [b for b in built if b is not None]
            self._final[key] = built
            return built
        state = self._open.get(key)
        if state is None:
            state = self._open[key] = _Open([])
        output: list[Any] = state.output
        # Elements before the last are final: each is built once and kept in the shared list;
        # only the last, which may still grow, is built again.
        last = len(value) - 1
        if len(output) > state.settled_output:
            del output[state.settled_output :]
        if state.settled < last:
            for element in value[state.settled : last]:
                built = self._value(item, element, True)
                if built is not None:
                    output.append(built)
            state.settled = last
            state.settled_output = len(output)
        if value:
            growing = self._value(item, value[-1], self._leaf_in != key)
            if growing is not None:
                output.append(growing)
                if not isinstance(growing, BaseModel | list | dict):
                    self._placed = growing
        state.size = len(output)
        state.length = len(value)
        state.item = item
        return output

    def _mapping(self, item: Plan, value: dict[str, Any]) -> dict[str, Any]:
        growing_at = len(value) - 1 if id(value) in self._open_ids else -1
        leaf_here = self._leaf_in == id(value)
        result = {}
        for position, key in enumerate(value):
            built = self._value(item, value[key], not (position == growing_at and leaf_here))
            if built is not None:
                result[key] = built
        return result
