"""Request parameters every API shares, in one neutral form that each `<api>_request.py` renders:
tools, tool_choice, stop sequences, and passing what an SDK method does not list in the body."""

from __future__ import annotations

import inspect
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from lionflow.errors import ConfigurationError

# -- request parameters ----------------------------------------------------------------------------


def sdk_parameters(method: Callable[..., Any]) -> frozenset[str]:
    """The keyword arguments an SDK method takes."""
    return frozenset(inspect.signature(method).parameters) - {"self"}


def sdk_arguments(params: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """`params` as keyword arguments of an SDK method that takes `known` (see `sdk_parameters`).

    The others travel in the request body as given (``extra_body``, over one the caller gave), so
    that what this SDK version does not list (a newer parameter, a compatible server's own) still
    reaches the API.
    """
    arguments: dict[str, Any] = {}
    extra_body = dict(params.get("extra_body") or {})
    for key, value in params.items():
        if key != "extra_body":
            (arguments if key in known else extra_body)[key] = value
    if extra_body:
        arguments["extra_body"] = extra_body
    return arguments


# -- messages --------------------------------------------------------------------------------------


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and part.get("type") in ("text", "input_text", "output_text"):
                texts.append(str(part.get("text", "")))
            else:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise ConfigurationError(f"message content part of type {kind!r} is not supported here")
        return "".join(texts)
    return str(content)


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments as an object, from a JSON string or a mapping."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, Mapping):
        return dict(arguments)
    try:
        value = json.loads(arguments)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"tool-call arguments are not valid JSON: {arguments!r}") from exc
    if not isinstance(value, dict):
        raise ConfigurationError(f"tool-call arguments must be a JSON object, not {arguments!r}")
    return value


def stop_sequences(stop: Any) -> list[str]:
    """The ``stop`` parameter as a list of sequences (empty when none); `ConfigurationError` unless
    it is a string or a list of strings."""
    if stop is None or stop == "":
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list | tuple) and all(isinstance(item, str) for item in stop):
        if "" in stop:
            raise ConfigurationError(f"stop sequences must not be empty: {stop!r}")
        return list(stop)
    raise ConfigurationError(f"stop must be a string or a list of strings, not {stop!r}")


# -- tools -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool in provider-neutral form; `parameters` is a JSON schema of an object."""

    name: str
    description: str
    parameters: dict[str, Any]


def _tool_spec(tool: Any) -> ToolSpec:
    if isinstance(tool, type) and issubclass(tool, BaseModel):
        return ToolSpec(tool.__name__, (tool.__doc__ or "").strip(), tool.model_json_schema())
    if not isinstance(tool, Mapping):
        raise ConfigurationError(f"a tool must be a dict or a pydantic model class, not {tool!r}")
    if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
        tool = tool["function"]  # OpenAI chat form
    name = tool.get("name")
    if not name or not isinstance(name, str):
        raise ConfigurationError(f"a tool needs a 'name' (a non-empty string): {dict(tool)!r}")
    parameters = tool.get("parameters", tool.get("input_schema")) or {"type": "object", "properties": {}}
    if not isinstance(parameters, Mapping):
        raise ConfigurationError(
            f"tool {name!r}: 'parameters' must be a JSON schema object (a dict), not {parameters!r}"
        )
    return ToolSpec(name, str(tool.get("description") or ""), dict(parameters))


def _tool_name(tool: Any) -> str | None:
    """The name a tool is called by, or None for one that has none to check (a provider's own)."""
    if isinstance(tool, type) and issubclass(tool, BaseModel):
        return tool.__name__
    if isinstance(tool, Mapping):
        function = tool.get("function")
        name = function.get("name") if isinstance(function, Mapping) else tool.get("name")
        return name if isinstance(name, str) else None
    return None


def tool_list(tools: Any) -> list[Any]:
    """The ``tools`` parameter as a list; `ConfigurationError` unless it is a list (or another
    iterable) of tools: a string, a single dict or a model class is a mistake, not a list of tools."""
    if tools is None:
        return []
    if isinstance(tools, str | bytes | Mapping | type) or not isinstance(tools, Iterable):
        raise ConfigurationError(
            f"tools must be a list of tools (dicts or pydantic model classes), not {tools!r}"
        )
    result = list(tools)
    counts = Counter(name for name in map(_tool_name, result) if name is not None)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        # The model could not say which one it calls; the APIs reject it or keep one of them.
        raise ConfigurationError(f"tools has more than one tool named {', '.join(map(repr, duplicates))}")
    return result


def tool_specs(tools: Any) -> list[ToolSpec]:
    """Tools given in OpenAI form, flat ``{name, description, parameters}`` form, Anthropic form
    (``input_schema``) or as pydantic model classes, normalized."""
    return [_tool_spec(tool) for tool in tool_list(tools)]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """``auto``, ``none``, ``required`` (some tool), or ``tool`` with the one `name` to call."""

    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None


def _choice(choice: Any) -> ToolChoice:
    if isinstance(choice, str) and choice:
        if choice in ("auto", "none", "required"):
            return ToolChoice(choice)  # type: ignore[arg-type]
        if choice == "any":
            return ToolChoice("required")
        return ToolChoice("tool", choice)
    if isinstance(choice, Mapping):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else choice.get("name")
        if name and isinstance(name, str):
            return ToolChoice("tool", name)
        if name is None and choice.get("type") in ("auto", "none", "required", "any"):
            return _choice(choice["type"])
    raise ConfigurationError(
        f"tool_choice {choice!r} is not understood; use auto, none, required or a tool name"
    )


def tool_choice(choice: Any, tools: Sequence[Any]) -> ToolChoice | None:
    """Normalize ``"auto" | "none" | "required" | "any" | {"type": "function", "function": {"name"}}
    | {"name": ...} | "<tool name>"`` for a request that offers `tools` (see `tool_list`).

    `ConfigurationError` for a choice no API could honour: ``required`` or a tool's name without
    tools, or the name of a tool not among them. ``auto`` and ``none`` without tools say nothing
    and are not sent (None): some APIs reject a tool_choice without tools.
    """
    if choice is None:
        return None
    result = _choice(choice)
    if not tools:
        if result.mode in ("auto", "none"):
            return None
        raise ConfigurationError(f"tool_choice {choice!r} needs tools=: the request offers no tools")
    names = [_tool_name(tool) for tool in tools]
    if result.mode == "tool" and None not in names and result.name not in names:
        raise ConfigurationError(
            f"tool_choice names {result.name!r}, which is not among the tools: "
            + ", ".join(repr(name) for name in names)
        )
    return result


def tool_fields(
    params: dict[str, Any],
    render_tools: Callable[[list[Any]], Any],
    render_choice: Callable[[Any, list[Any]], Any],
    *,
    choice_key: str = "tool_choice",
) -> dict[str, Any]:
    """Take ``tools`` and ``tool_choice`` out of `params` and render them for one API: the request
    fields ``tools`` (when `render_tools` gives any) and `choice_key` (when `render_choice`, given
    the raw choice and the checked tools, gives one)."""
    given = tool_list(params.pop("tools", None))
    fields: dict[str, Any] = {}
    tools = render_tools(given)
    if tools:
        fields["tools"] = tools
    choice = render_choice(params.pop("tool_choice", None), given)
    if choice is not None:
        fields[choice_key] = choice
    return fields
