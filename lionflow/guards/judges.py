"""Checks for `OutputGuard` that judge what a reply means: `json_schema(Model)` (a structured reply
that can still become a valid `Model`) and `llm_judge(model, instruction)` (another model's verdict)."""

from __future__ import annotations

import copy
import enum
import json
import logging
import re
import types
import typing
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin

import anyio
from pydantic import AliasChoices, AliasPath, BaseModel, RootModel, TypeAdapter, ValidationError

from lionflow.errors import ConfigurationError, PartialJSONError, ProviderError
from lionflow.guards.output import GuardResult
from lionflow.structured import PartialJSON

if TYPE_CHECKING:
    from lionflow.services.imodel import iModel

_log = logging.getLogger("lionflow.guards")

# One per model: JSON key -> (field name, node); required fields (name, keys); extras forbidden.
_Fields = tuple[dict[str, tuple[str, "_Node"]], list[tuple[str, frozenset[str]]], bool]


@dataclass(eq=False)
class _Node:
    """How a value of one annotation is followed while it streams: "model", "list" and "map" are
    followed inside; "scalar" and "whole" values are validated (by `adapter`) once complete, and a
    container where a scalar belongs fails at once; "skip" is left to the final validation."""

    kind: str
    adapter: TypeAdapter[Any] | None = None
    item: _Node | None = None  # a list's items, a map's values
    fields: _Fields | None = None


def _plan(annotation: Any, models: dict[type, _Fields], full: Any = None) -> _Node:
    """The node for `annotation`; a complete value is validated against `full` (a field's
    constraints included), by default the annotation."""
    members = [a for a in get_args(annotation) if a is not type(None)]
    optional = get_origin(annotation) in (typing.Union, types.UnionType) and len(members) == 1
    inner = members[0] if optional else annotation
    origin, args = get_origin(inner), get_args(inner)
    try:
        adapter = TypeAdapter(annotation if full is None else full)
    except Exception:  # a type only its model can validate (arbitrary types): left to the end
        return _Node("skip")
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        before = inner.__pydantic_decorators__.model_validators.values()
        if issubclass(inner, RootModel) or any(d.info.mode != "after" for d in before):
            return _Node("whole", adapter)  # it may take what its fields would not
        return _Node("model", adapter, fields=_fields(inner, models))
    if origin is list or inner is list:
        return _Node("list", adapter, item=_plan(args[0] if args else Any, models))
    if (origin is dict or inner is dict) and (not args or args[0] is str):
        return _Node("map", adapter, item=_plan(args[1] if args else Any, models))
    scalar = inner in (str, int, float, bool) or origin is Literal or isinstance(inner, enum.EnumType)
    return _Node("scalar" if scalar else "whole", adapter)


def _fields(model: type[BaseModel], models: dict[type, _Fields]) -> _Fields:
    if model in models:
        return models[model]
    keys: dict[str, tuple[str, _Node]] = {}
    required: list[tuple[str, frozenset[str]]] = []
    models[model] = (keys, required, model.model_config.get("extra") == "forbid")
    validators = model.__pydantic_decorators__.field_validators.values()
    # a before, wrap or plain validator may turn what the type refuses into a valid value
    custom = {name for d in validators if d.info.mode != "after" for name in d.info.fields}
    for name, info in model.model_fields.items():
        accepted, alias = {name, info.alias or name}, info.validation_alias
        for choice in alias.choices if isinstance(alias, AliasChoices) else [alias]:
            first = choice.path[0] if isinstance(choice, AliasPath) else choice
            accepted.update([first] if isinstance(first, str) else [])
        skip = name in custom or "*" in custom
        node = _Node("skip") if skip else _plan(info.annotation, models, Annotated[info.annotation, info])
        keys.update(dict.fromkeys(accepted, (name, node)))
        if info.is_required():
            required.append((name, frozenset(accepted)))
    return models[model]


class json_schema:
    """Fails a structured reply as soon as it can no longer become a valid `model`, and at the end
    unless the whole reply validates (as ``response_format=model`` parses it, text around the JSON
    ignored). Early, as text arrives (each character parsed once, by `PartialJSON`): text that is not
    JSON; a complete value of the wrong type or out of its field's constraints; a container of the
    wrong kind (or a string where a container belongs); an unknown field when the model forbids
    extras; an object closed without a required field. Left to the end: model validators, a
    container's constraints, a string that may still parse (``"12"`` for an int), unions, fields
    with before-validators. Reasons name a field's path and a position, never the reply's text.
    Its parse goes on from window to window: each answer gets a parse of its own (`for_answer`),
    so one guard may watch calls that overlap."""

    def __init__(self, model: type[BaseModel]) -> None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigurationError(f"json_schema takes a pydantic model class, not {model!r}")
        self.model, self.__name__ = model, "json_schema"
        models: dict[type, _Fields] = {}
        self._root = _plan(model, models)
        self._shown = {key: f".{key}" for keys, _, _ in models.values() for key in keys}
        self._restart()

    def for_answer(self) -> json_schema:
        """A fresh check for one answer (its guard calls this for each): the same model, a new parse."""
        fresh = copy.copy(self)
        fresh._restart()
        return fresh

    def _restart(self) -> None:
        self._parser = PartialJSON()
        self._fed = 0  # characters parsed: a window's new text starts here
        self._settled: dict[int, int] = {}  # open containers: entries checked for good
        self._done: set[int] = set()  # closed containers, checked

    def __call__(self, window: str) -> GuardResult:
        start, final = getattr(window, "start", 0), getattr(window, "final", True)
        if start == 0:
            self._restart()  # a new answer
        if start > self._fed:
            return GuardResult(False, "json_schema missed text: it follows one answer at a time")
        new, parser = window[self._fed - start :], self._parser
        self._fed += len(new)
        try:
            parser.feed(new)
        except PartialJSONError as error:
            return GuardResult(False, f"not JSON at position {error.position}")
        value = parser.value
        if value is not None:
            self._open = {id(container) for container in parser.open_containers()}
            self._growing = id(parser.open_containers()[-1]) if parser.in_string else None
            reason = self._walk(value, self._root, "$", growing=False)
            if reason is not None:
                return GuardResult(False, f"{reason} (by position {self._fed})")
        if not final:
            return GuardResult(True)
        if not parser.done:
            return GuardResult(False, "no JSON in the reply" if value is None else "the JSON ends early")
        try:
            self.model.model_validate_json(json.dumps(value))  # (the document's exact value)
        except ValidationError as error:
            err = error.errors()[0]
            # a map's key is the reply's text: shown only when it is a field's name anyway
            loc = "".join(f"[{p}]" if isinstance(p, int) else self._shown.get(p, "[key]") for p in err["loc"])
            return GuardResult(False, f"{err['type']} at ${loc}")
        return GuardResult(True)

    def _walk(self, value: Any, node: _Node | None, path: str, *, growing: bool) -> str | None:
        if node is None or node.kind == "skip":
            return None
        follow = node.kind in ("model", "map", "list")
        if isinstance(value, dict | list):
            if follow and isinstance(value, list) == (node.kind == "list"):
                return self._inside(value, node, path)
            if follow or node.kind == "scalar":
                return f"wrong type at {path}"
            if id(value) in self._open or id(value) in self._done:
                return None  # a "whole" value: validated once, when it closes
            self._done.add(id(value))
        elif growing:  # a string still being written: it can become anything but a container
            return f"wrong type at {path}" if follow else None
        try:
            node.adapter.validate_json(json.dumps(value))  # type: ignore[union-attr]
        except ValidationError as error:
            return f"{error.errors()[0]['type']} at {path}"
        return None

    def _inside(self, value: Any, node: _Node, path: str) -> str | None:
        key, size = id(value), len(value)
        if key in self._done:
            return None
        # Entries before the last are final: each is checked once; the last again until it settles.
        # (A dict's newest keys are reached from its end, without walking the older ones.)
        start = self._settled.get(key, 0)
        news = value[start:] if isinstance(value, list) else [*islice(reversed(value), size - start)][::-1]
        for index, entry in enumerate(news, start):
            growing = key == self._growing and index == size - 1
            if isinstance(value, list):
                reason = self._walk(entry, node.item, f"{path}[{index}]", growing=growing)
            elif node.fields is None:
                reason = self._walk(value[entry], node.item, f"{path}[key]", growing=growing)
            elif entry in node.fields[0]:
                name, child = node.fields[0][entry]
                reason = self._walk(value[entry], child, f"{path}.{name}", growing=growing)
            else:
                reason = f"unknown field in {path}" if node.fields[2] else None
            if reason is not None:
                return reason
        if key in self._open:
            self._settled[key] = max(size - 1, 0)
            return None
        self._done.add(key)
        missing = [name for name, keys in (node.fields[1] if node.fields else ()) if keys.isdisjoint(value)]
        return f"missing field {path}.{missing[0]}" if missing else None


_PROMPT = (
    "You check text another model is writing against this rule:\n\n{instruction}\n\nThe user's message "
    "is one excerpt of the text (it may begin or end mid-sentence). Reply exactly PASS if it keeps the "
    "rule, or FAIL: and a short reason if it breaks it. Do not quote it. Write nothing else."
)
_VERDICT = re.compile(r"PASS|FAIL(?::(.*))?", re.DOTALL)
OnError = Literal["fail", "pass"]  # what a judge's own failure does to the window


class llm_judge:
    """An async check that asks another `model` whether each window keeps `instruction`. The judge
    must reply exactly ``PASS`` or ``FAIL: reason`` (the reason becomes the guard's and may reach the
    client); any other reply fails, as "the judge's verdict could not be read". The judge's own
    failure (a `ProviderError`, or no verdict within `timeout` seconds) fails the window, or passes
    it with ``on_error="pass"``; any other error fails it: the check never raises. Each window costs
    a model call, made beside the stream (never on a chunk's path), so give it a large window::

        polite = OutputGuard(llm_judge(judge, "No insults."), name="polite", window=2000, overlap=100)
    """

    def __init__(
        self, model: iModel, instruction: str, *, on_error: OnError = "fail", timeout: float | None = None
    ) -> None:
        if not isinstance(instruction, str) or not instruction.strip():
            raise ConfigurationError("llm_judge needs an instruction: the rule the text must keep")
        if on_error not in ("fail", "pass"):
            raise ConfigurationError(f"on_error must be 'fail' or 'pass', not {on_error!r}")
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.model, self.instruction, self.on_error, self.timeout = model, instruction, on_error, timeout
        self.__name__ = "llm_judge"

    async def __call__(self, window: str) -> GuardResult:
        if not window.strip():
            return GuardResult(True)  # nothing to judge
        system = _PROMPT.format(instruction=self.instruction)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": str(window)}]
        try:
            with anyio.fail_after(self.timeout):
                reply = (await self.model.invoke(messages)).text.strip()
        except (ProviderError, TimeoutError) as error:
            _log.warning("llm_judge: the judge failed (%r); on_error=%r", error, self.on_error)
            return GuardResult(self.on_error == "pass", f"the judge failed ({type(error).__name__})")
        except Exception as error:  # a judge that cannot be asked at all never lets text through
            return GuardResult(False, f"the judge could not be asked ({type(error).__name__})")
        verdict = _VERDICT.fullmatch(reply)
        if verdict is None:
            return GuardResult(False, "the judge's verdict could not be read")
        if reply == "PASS":
            return GuardResult(True)
        reason = " ".join((verdict.group(1) or "").split())[:200]  # one line, bounded
        return GuardResult(False, reason or "the judge gave no reason")
