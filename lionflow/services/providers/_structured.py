"""Structured output in: a call's ``response_format`` in one neutral form that each adapter maps to
its own API (no SDK imported here).

``response_format`` may be a pydantic model class, a list of one (``list[Model]``, asked for as
``{"items": [...]}`` since the APIs want an object at the top), a JSON schema (a dict), or an OpenAI-style
response format dict: ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``,
``{"type": "json_object"}`` or ``{"type": "text"}``. The SDKs take none of these as given (a model
class is refused by every ``create()``), so every adapter sends the schema in its own way.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from lionflow.errors import ConfigurationError
from lionflow.structured.items import ITEMS_KEY, list_item_type

RESPONSE_FORMAT_TYPES = frozenset({"text", "json_object", "json_schema"})
"""The ``type`` values of an OpenAI-style response format dict (a JSON schema has other ones)."""

# Keywords that make a dict a JSON schema rather than something else given by mistake.
_SCHEMA_KEYS = frozenset({"type", "properties", "$ref", "$defs", "anyOf", "oneOf", "allOf", "enum", "items"})

# OpenAI's strict mode takes a subset of JSON Schema; with any of these it rejects the schema.
_NOT_STRICT_KEYS = frozenset(
    {
        "oneOf",
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "patternProperties",
    }
)
_SCHEMA_MAPS = ("properties", "$defs", "definitions")  # keywords whose values map names to schemas
_SCHEMA_LISTS = ("anyOf", "prefixItems")  # keywords whose values are lists of schemas
_SCHEMA_VALUES = ("items", "additionalProperties", "contains")  # keywords whose value may be a schema


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """What the caller asked the reply to be: plain ``text``, any ``json_object``, or JSON matching
    `schema` (``json_schema``). `name` fits every provider's naming rule (``[a-zA-Z0-9_-]{1,64}``);
    `strict` says whether to ask for strict (constrained) decoding where a provider has it."""

    kind: Literal["text", "json_object", "json_schema"]
    name: str = "response"
    schema: dict[str, Any] = field(default_factory=dict)
    strict: bool = False
    description: str | None = None


def _name(value: Any) -> str:
    # A generic model's __name__ is "Page[Item]": brackets are not allowed in format or tool names.
    cleaned = re.sub(r"[^a-zA-Z0-9_-]+", "_", str(value or "")).strip("_")
    return cleaned[:64] or "response"


def strict_ready(schema: Any) -> bool:
    """Whether `schema` meets strict mode's rules (OpenAI's, which Groq and others copy): an object
    root, every object closed (``additionalProperties: false``) with all its properties required,
    and none of the keywords strict mode refuses. Pydantic gives such a schema for models with
    ``extra="forbid"`` and no defaults."""
    return isinstance(schema, Mapping) and schema.get("type") == "object" and _strict(schema)


def _strict(schema: Any) -> bool:
    if isinstance(schema, list):
        return all(_strict(item) for item in schema)
    if not isinstance(schema, Mapping):
        return True
    if _NOT_STRICT_KEYS.intersection(schema):
        return False
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False or set(schema.get("required") or ()) != set(
            properties
        ):
            return False
    nested: list[Any] = [schema.get(key) for key in _SCHEMA_LISTS + _SCHEMA_VALUES]
    for key in _SCHEMA_MAPS:
        value = schema.get(key)
        if isinstance(value, Mapping):
            nested.extend(value.values())
    return all(_strict(item) for item in nested if item is not None)


def output_format(value: Any) -> OutputFormat | None:
    """`value` (a call's ``response_format``) in neutral form; None when there is none.

    Raises `ConfigurationError` for anything that is neither a model class, a JSON schema nor an
    OpenAI-style response format dict.
    """
    if value is None:
        return None
    item = list_item_type(value)
    if item is not None:
        value = list_wrapper(item)  # every structured-output API wants an object at the top
    if isinstance(value, type) and issubclass(value, BaseModel):
        schema = value.model_json_schema()
        return OutputFormat("json_schema", _name(value.__name__), schema, strict_ready(schema))
    if isinstance(value, Mapping):
        kind = value.get("type")
        if kind in ("text", "json_object"):
            return OutputFormat(kind)
        if kind == "json_schema":
            # Chat Completions nests the schema under "json_schema"; the Responses API does not.
            spec = value.get("json_schema", value)
            given = spec.get("schema") if isinstance(spec, Mapping) else None
            if not isinstance(given, Mapping):
                raise ConfigurationError(f"a json_schema response_format needs its 'schema': {dict(value)!r}")
            strict = spec.get("strict")
            return OutputFormat(
                "json_schema",
                _name(spec.get("name") or given.get("title")),
                dict(given),
                strict_ready(given) if strict is None else bool(strict),
                spec.get("description"),
            )
        if _SCHEMA_KEYS.intersection(value):
            return OutputFormat("json_schema", _name(value.get("title")), dict(value), strict_ready(value))
    raise ConfigurationError(
        "response_format must be a pydantic model class, a JSON schema dict, or "
        f"{{'type': 'json_schema' | 'json_object' | 'text', ...}}, not {value!r}"
    )


@functools.cache
def list_wrapper(item: Any) -> type[BaseModel]:
    """The object a ``list[item]`` reply is asked for as: ``{"items": [...]}`` (closed, so that a
    strict-ready element type keeps the whole schema strict-ready)."""
    title = getattr(item, "__name__", None) or "Item"
    # (the field is named as ITEMS_KEY says: the key a list reply sits under)
    return create_model(f"{title}List", __config__=ConfigDict(extra="forbid"), items=(list[item], ...))


def parse_list(structure: Any, document: str) -> list[Any]:
    """A ``list[X]`` reply, strictly validated: a bare JSON list, or the object ``{"items": [...]}``
    that lionflow asks for."""
    item = list_item_type(structure)
    if document.lstrip().startswith("["):
        return TypeAdapter(list[item]).validate_json(document)  # type: ignore[valid-type]
    return getattr(list_wrapper(item).model_validate_json(document), ITEMS_KEY)  # type: ignore[no-any-return]


def chat_response_format(value: Any) -> dict[str, Any]:
    """``response_format`` for Chat Completions: a response format dict as given, a model class or a
    JSON schema as ``json_schema`` with ``strict`` true only when the schema allows it."""
    if isinstance(value, Mapping) and value.get("type") in RESPONSE_FORMAT_TYPES:
        return dict(value)
    spec = output_format(value)
    assert spec is not None
    assert spec.kind == "json_schema"
    json_schema: dict[str, Any] = {"name": spec.name, "schema": spec.schema, "strict": spec.strict}
    return {"type": "json_schema", "json_schema": json_schema}


def responses_format(spec: OutputFormat) -> dict[str, Any]:
    """`spec` as the Responses API's ``text.format``: the schema fields sit beside ``type``."""
    if spec.kind != "json_schema":
        return {"type": spec.kind}
    result: dict[str, Any] = {"type": "json_schema", "name": spec.name, "schema": spec.schema}
    if spec.description:
        result["description"] = spec.description
    return result | {"strict": spec.strict}


def schema_instruction(spec: OutputFormat) -> str:
    """The system-prompt note that asks for JSON matching `spec`, for an API whose JSON mode takes no
    schema (it also needs the word "JSON" in the prompt)."""
    schema = json.dumps(spec.schema, separators=(",", ":"), ensure_ascii=False)
    return f"Reply with one JSON object and nothing else. The JSON must match this JSON schema: {schema}"


def with_system_note(messages: Iterable[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """Chat `messages` with `note` added to the system prompt: at the end of a leading system
    message, or as a new system message first."""
    result = list(messages)
    if result and result[0].get("role") == "system" and isinstance(result[0].get("content"), str):
        first = result[0]
        result[0] = {**first, "content": f"{first['content']}\n\n{note}" if first["content"] else note}
    else:
        result.insert(0, {"role": "system", "content": note})
    return result
