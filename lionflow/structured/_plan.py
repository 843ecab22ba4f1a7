"""Compiled plans for partial objects: what an annotation does with a dict, a list or a leaf value,
worked out once (per model class, and per field inside it) instead of on every emission.

`PartialBuilder` walks the partial value with these plans. A plan only answers questions about the
annotation (is it Optional, which model does a dict become, what is a list's element type, which
adapters validate a leaf); everything about the value being written stays in the builder. A model's
fields are compiled the first time the model is met and kept with the class (a self-referencing
model reaches its own plan again, so compiling never loops); the plan is compiled again when
``model_rebuild()`` has replaced the class's fields.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from functools import lru_cache
from typing import Any, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

MISSING: Any = object()

# What a dict value becomes.
DICT_AS_IS = 0  # the dict itself (a union of types none of which is a model)
DICT_IF_COMPLETE = 1  # the dict itself once complete (Any, or a type not handled here)
DICT_OBJECT = 2  # a partial model
DICT_MAPPING = 3  # a dict whose values are built by the item plan

# What a list value becomes.
LIST_IF_COMPLETE = 0  # the list itself once complete
LIST_FIXED = 1  # a tuple, set or frozenset: validated once the list has closed
LIST_SEQUENCE = 2  # a list whose elements are built by the item plan


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


def allows_none(annotation: Any) -> bool:
    """Whether an explicit null is a value of `annotation` (Any, None, Optional)."""
    if annotation is Any or annotation is None or annotation is type(None):
        return True
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return allows_none(get_args(annotation)[0])
    return (origin is typing.Union or origin is types.UnionType) and type(None) in get_args(annotation)


@lru_cache(maxsize=512)
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


class Plan:
    """How one annotation shows a value: the decisions `typing` would be asked on every emission."""

    __slots__ = (
        "_adapters",
        "_item",
        "_model",
        "any",
        "exact",
        "item_annotation",
        "members",
        "model",
        "on_dict",
        "on_list",
        "shows_growing_string",
        "str",
        "stripped",
    )

    def __init__(self, annotation: Any) -> None:
        stripped, members = _strip_optional(annotation)
        self.stripped = stripped
        self.members = members
        model = next((m for m in members if _is_model(m)), None)
        origin = get_origin(stripped)
        self.model: type[BaseModel] | None = model
        self._model: ModelPlan | None = None
        self._item: Plan | None = None
        self.item_annotation: Any = Any
        if model is None and len(members) > 1:
            self.on_dict = DICT_AS_IS
        elif model is not None:
            self.on_dict = DICT_OBJECT
        elif origin in (dict, typing.Dict) or stripped is dict:  # noqa: UP006
            self.on_dict = DICT_MAPPING
            args = get_args(stripped)
            self.item_annotation = args[1] if len(args) == 2 else Any
        else:
            self.on_dict = DICT_IF_COMPLETE
        if origin in (tuple, set, frozenset) or stripped in (tuple, set, frozenset):
            self.on_list = LIST_FIXED
        elif origin in (list, typing.List) or stripped is list:  # noqa: UP006
            self.on_list = LIST_SEQUENCE
            args = get_args(stripped)
            self.item_annotation = args[0] if args else Any
        else:
            self.on_list = LIST_IF_COMPLETE
        self.any = stripped is Any
        self.str = stripped is str
        self.shows_growing_string = stripped is str or str in members
        # a value of exactly this type is shown as it is (an enum member is built by its adapter)
        self.exact: type | None = None
        if isinstance(stripped, type):
            try:
                if not issubclass(stripped, enum.Enum):
                    self.exact = stripped
            except TypeError:  # a generic alias that passes for a type
                pass
        self._adapters: list[TypeAdapter[Any]] | None = None

    def model_plan(self) -> ModelPlan:
        """The plan of the model a dict becomes (DICT_OBJECT), compiled on first use."""
        if self._model is None:
            assert self.model is not None
            self._model = model_plan(self.model)
        return self._model

    def item(self) -> Plan:
        """The plan of a list's elements or a mapping's values, compiled on first use."""
        if self._item is None:
            self._item = Plan(self.item_annotation)
        return self._item

    def fixed(self, value: list[Any]) -> Any:
        """A closed list as the tuple, set or frozenset the annotation asks for, or None."""
        try:
            return _adapter(self.stripped).validate_python(value)
        except ValidationError:
            return None

    def leaf(self, value: Any, complete: bool) -> Any:
        """A string, number, boolean or null as the annotation shows it; None while not showable."""
        if value is None:
            return None
        if not complete and isinstance(value, str):
            # a string still being written: only a plain str field shows it as it grows
            return value if self.shows_growing_string else None
        if self.any or (self.str and isinstance(value, str)) or type(value) is self.exact:
            return value
        adapters = self._adapters
        if adapters is None:
            adapters = self._adapters = [_adapter(member) for member in self.members]
        for adapter in adapters:
            try:
                return adapter.validate_python(value)
            except ValidationError:
                continue
        return None


class FieldPlan:
    """One model field: its name, the JSON key that carries it, its default and its plan."""

    __slots__ = ("_plan", "allows_none", "annotation", "default", "factory", "key", "name")

    def __init__(
        self, name: str, key: str, annotation: Any, default: Any, factory: Callable[[], Any] | None
    ) -> None:
        self.name = name
        self.key = key
        self.annotation = annotation
        self.default = default
        self.factory = factory
        self.allows_none = allows_none(annotation)
        self._plan: Plan | None = None

    @property
    def plan(self) -> Plan:
        if self._plan is None:  # compiled on first use: a model may refer to itself
            self._plan = Plan(self.annotation)
        return self._plan


class ModelPlan:
    """A model class's fields by JSON key, and how to make an instance without validating."""

    __slots__ = ("by_key", "defaults", "factories", "fields", "model", "source")

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        self.source = model.__pydantic_fields__
        fields = []
        for name, info in self.source.items():
            if info.default_factory is not None:
                default, factory = MISSING, info.default_factory
            elif info.is_required():
                default, factory = None, None
            else:
                default, factory = info.default, None
            fields.append(FieldPlan(name, info.alias or name, info.annotation, default, factory))  # type: ignore[arg-type]
        self.fields = tuple(fields)
        self.by_key = {field.key: field for field in fields}
        # the instance dict before the fields given: every field in order, defaults in place
        self.defaults = {field.name: field.default for field in fields}
        self.factories = tuple((field.name, field.factory) for field in fields if field.factory)

    def construct(self, values: dict[str, Any]) -> BaseModel:
        """An instance without validation: the fields given, defaults (or None) for the rest."""
        data = self.defaults.copy()
        for name, factory in self.factories:
            if name not in values:
                data[name] = factory()
        data.update(values)
        instance = _new(self.model)
        _set_dict(instance, data)
        _set_fields_set(instance, set(values))
        _set_extra(instance, None)
        _set_private(instance, None)
        return instance


_new = object.__new__


def _setter(name: str) -> Callable[[Any, Any], None]:
    """A setter for one of BaseModel's slots that skips the attribute lookup (a partial object is
    made on nearly every delta, and ``object.__setattr__`` costs twice as much)."""
    descriptor = vars(BaseModel).get(name)
    if descriptor is not None and hasattr(descriptor, "__set__"):
        return descriptor.__set__  # type: ignore[no-any-return]
    return lambda instance, value: object.__setattr__(instance, name, value)


_set_dict = _setter("__dict__")
_set_fields_set = _setter("__pydantic_fields_set__")
_set_extra = _setter("__pydantic_extra__")
_set_private = _setter("__pydantic_private__")

# Bounded, so that model classes made per request do not pile up here (a plan refers to its class
# through the annotations, so a weak mapping would not let them go either).
_MODEL_PLANS: dict[type[BaseModel], ModelPlan] = {}
_MAX_MODEL_PLANS = 256


def model_plan(model: type[BaseModel]) -> ModelPlan:
    """The compiled plan of `model`: once per class, again after ``model_rebuild()`` changed it."""
    plan = _MODEL_PLANS.get(model)
    if plan is None or plan.source is not model.__pydantic_fields__:
        if len(_MODEL_PLANS) >= _MAX_MODEL_PLANS:
            _MODEL_PLANS.clear()  # builders already running keep the plans they hold
        plan = _MODEL_PLANS[model] = ModelPlan(model)
    return plan
