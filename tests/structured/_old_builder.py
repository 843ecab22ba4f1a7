"""The partial builder as it was before compiled plans (lionflow 0.x, issue 19), kept as the oracle
the compiled builder is checked against: same objects, at the same deltas. Not used by lionflow."""

# ruff: noqa
# mypy: ignore-errors
from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, Protocol, TypeVar, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError


M = TypeVar("M", bound=BaseModel)

_MISSING = object()
_new = object.__new__
_set = object.__setattr__


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    name: str
    key: str  # the JSON key: the alias when there is one
    annotation: Any
    default: Any
    factory: Callable[[], Any] | None


@lru_cache(maxsize=256)
def _plan(model: type[BaseModel]) -> tuple[_FieldPlan, ...]:
    plans = []
    for name, info in model.model_fields.items():
        if info.default_factory is not None:
            default, factory = _MISSING, info.default_factory
        elif info.is_required():
            default, factory = None, None
        else:
            default, factory = info.default, None
        plans.append(_FieldPlan(name, info.alias or name, info.annotation, default, factory))  # type: ignore[arg-type]
    return tuple(plans)


@lru_cache(maxsize=512)
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def _construct(model: type[M], values: dict[str, Any]) -> M:
    """A model instance without validation: the fields given, defaults (or None) for the rest."""
    data = {}
    for plan in _plan(model):
        if plan.name in values:
            data[plan.name] = values[plan.name]
        elif plan.factory is not None:
            data[plan.name] = plan.factory()
        else:
            data[plan.name] = plan.default
    instance = _new(model)
    _set(instance, "__dict__", data)
    _set(instance, "__pydantic_fields_set__", set(values))
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _strip_optional(annotation: Any) -> tuple[Any, list[Any]]:
    origin = get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in get_args(annotation) if a is not type(None)]
        return (members[0] if len(members) == 1 else annotation), members
    if origin is typing.Annotated:
        return _strip_optional(get_args(annotation)[0])
    return annotation, [annotation]


def _allows_none(annotation: Any) -> bool:
    if annotation is Any or annotation is None or annotation is type(None):
        return True
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _allows_none(get_args(annotation)[0])
    return (origin is typing.Union or origin is types.UnionType) and type(None) in get_args(annotation)


class _Open:
    """What is kept for a container still being written: its children built so far."""

    __slots__ = ("built", "output", "settled", "settled_output", "size")

    def __init__(self, output: Any) -> None:
        self.size = 0  # fields or items shown at the last build
        self.output = output  # the list handed out, growing in place
        self.settled = 0  # elements of the value already final (all but the last)
        self.settled_output = 0  # their built items in `output`
        self.built: dict[str, Any] = {}  # for objects: final fields by name


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
        self._open: dict[int, _Open] = {}
        self._final: dict[int, Any] = {}  # closed containers, built once
        self._placed: Any = _MISSING  # the newest leaf value placed into the object
        self._fingerprint: Any = None

    def build(self, parser: PartialParser) -> M | None:
        """The partial object, or None when nothing a `model` shows has changed since last time."""
        value = parser.value
        if not isinstance(value, dict):
            return None
        self._open_ids = {id(container) for container in parser.open_containers()}
        self._growing_string = parser.in_string
        self._innermost = id(parser.open_containers()[-1]) if parser.path_depth else None
        self._placed = _MISSING
        result = self._value(self.model, value)
        # forget the state of containers that closed since
        for key in [k for k in self._open if k not in self._open_ids]:
            del self._open[key]
        # Containers still growing are shared with earlier objects, so comparing objects cannot tell
        # a change; the sizes of the open containers and the newest leaf can, cheaply.
        # growth inside a container not tracked here (a dict field, an Any value) shows by revision
        untracked = self._innermost is not None and self._innermost not in self._open
        fingerprint = (
            tuple(state.size for state in self._open.values()),
            len(self._final),
            self._placed,
            parser.revision if untracked else None,
        )
        if fingerprint == self._fingerprint or not isinstance(result, self.model):
            return None
        self._fingerprint = fingerprint
        return result

    def _value(self, annotation: Any, value: Any, *, complete: bool = True) -> Any:
        annotation, members = _strip_optional(annotation)
        if isinstance(value, dict):
            model = next((m for m in members if _is_model(m)), None)
            if model is None and len(members) > 1:
                return self._value_union(members, value)
            if model is not None:
                return self._object(model, value)
            if get_origin(annotation) in (dict, typing.Dict) or annotation is dict:  # noqa: UP006
                args = get_args(annotation)
                return self._mapping(args[1] if len(args) == 2 else Any, value)
            return value if complete else None
        if isinstance(value, list):
            origin = get_origin(annotation)
            if origin in (tuple, set, frozenset) or annotation in (tuple, set, frozenset):
                # fixed-shape or unordered containers appear once complete, as their own type
                if id(value) in self._open_ids:
                    return None
                try:
                    return _adapter(annotation).validate_python(value)
                except ValidationError:
                    return None
            if origin in (list, typing.List, tuple, set, frozenset) or annotation is list:  # noqa: UP006
                args = get_args(annotation)
                return self._sequence(args[0] if args else Any, value)
            return value if complete else None
        return self._leaf(annotation, members, value, complete)

    def _value_union(self, members: list[Any], value: dict[str, Any]) -> Any:
        models = [m for m in members if _is_model(m)]
        if not models:
            return value
        # the model whose fields best cover the keys seen so far
        best = max(models, key=lambda m: sum(1 for p in _plan(m) if p.key in value))
        return self._object(best, value)

    def _place(self, built: Any) -> None:
        if not isinstance(built, BaseModel | list | dict):  # containers record their own leaves
            self._placed = built

    def _leaf(self, annotation: Any, members: list[Any], value: Any, complete: bool) -> Any:
        if value is None:
            return None
        if isinstance(value, str) and not complete:
            # a string still being written: only a plain str field shows it as it grows
            return value if annotation is str or str in members else None
        if annotation is Any or (annotation is str and isinstance(value, str)):
            return value
        if type(value) is annotation and not issubclass(annotation, enum.Enum):
            return value
        for member in members:
            try:
                return _adapter(member).validate_python(value)
            except ValidationError:
                continue
        return None

    def _object(self, model: type[BaseModel], value: dict[str, Any]) -> BaseModel:
        key = id(value)
        if key in self._final:
            return self._final[key]  # type: ignore[no-any-return]
        is_open = key in self._open_ids
        state = self._open.get(key) if is_open else None
        if is_open and state is None:
            state = self._open[key] = _Open(None)
        keys = list(value)
        fields: dict[str, Any] = {}
        by_key = {plan.key: plan for plan in _plan(model)}
        last = len(keys) - 1
        for position, json_key in enumerate(keys):
            plan = by_key.get(json_key)
            if plan is None:
                continue
            if state is not None and position < last and plan.name in state.built:
                fields[plan.name] = state.built[plan.name]
                continue
            growing = is_open and position == last
            built = self._value(
                plan.annotation, value[json_key], complete=not self._is_open_leaf(growing, key)
            )
            default = plan.factory() if plan.factory is not None else plan.default
            if value[json_key] is None and default is not None and _allows_none(plan.annotation):
                built = None  # an explicit null where the field takes one: shown, not the default
            elif built is None or built == default:
                continue  # nothing to show yet: the field reads as missing, its default stays
            fields[plan.name] = built
            if growing:
                self._place(built)
            elif state is not None:
                state.built[plan.name] = built
        instance = _construct(model, fields)
        if state is not None:
            state.size = len(fields)
        else:
            self._final[key] = instance
        return instance

    def _is_open_leaf(self, growing: bool, container: int) -> bool:
        return growing and self._growing_string and container == self._innermost

    def _sequence(self, item: Any, value: list[Any]) -> list[Any]:
        key = id(value)
        if key in self._final:
            return self._final[key]  # type: ignore[no-any-return]
        if key not in self._open_ids:
            built = [self._value(item, element) for element in value]
            built = [b for b in built if b is not None]
            self._final[key] = built
            return built
        state = self._open.get(key)
        if state is None:
            state = self._open[key] = _Open([])
        output: list[Any] = state.output
        # Elements before the last are final: each is built once and kept in the shared list;
        # only the last, which may still grow, is built again.
        del output[state.settled_output :]
        for element in value[state.settled : len(value) - 1]:
            built = self._value(item, element)
            if built is not None:
                output.append(built)
        state.settled = max(state.settled, len(value) - 1)
        state.settled_output = len(output)
        if value:
            growing = self._value(item, value[-1], complete=not self._is_open_leaf(True, key))
            if growing is not None:
                output.append(growing)
                self._place(growing)
        state.size = len(output)
        return output

    def _mapping(self, item: Any, value: dict[str, Any]) -> dict[str, Any]:
        is_open = id(value) in self._open_ids
        keys = list(value)
        result = {}
        for position, key in enumerate(keys):
            growing = is_open and position == len(keys) - 1
            built = self._value(item, value[key], complete=not self._is_open_leaf(growing, id(value)))
            if built is not None:
                result[key] = built
        return result
