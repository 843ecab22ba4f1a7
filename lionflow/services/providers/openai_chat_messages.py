"""Chat Completions requests: lionflow messages, tools and parameters in the form the OpenAI-style
chat API takes, shared by the OpenAI and Groq adapters (no SDK imported here)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from lionflow.errors import ConfigurationError
from lionflow.services.providers._common import content_text, tool_choice, tool_specs
from lionflow.services.providers._structured import chat_response_format

__all__ = ["chat_messages", "chat_params", "chat_tool_choice", "chat_tools"]

# Request keys the adapter sets itself; a parameter of the same name would clash with them.
_RESERVED = frozenset({"model", "messages", "stream"})


def _tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function")
    if not isinstance(function, Mapping):
        function = call  # the flat {"id", "name", "arguments"} form
    name = function.get("name")
    if not name or not call.get("id"):
        raise ConfigurationError(
            f"an assistant tool call needs an 'id' and a function 'name': {dict(call)!r}"
        )
    arguments = function.get("arguments")
    if arguments is None or isinstance(arguments, Mapping):
        arguments = json.dumps(dict(arguments or {}))
    return {
        "id": str(call["id"]),
        "type": "function",
        "function": {"name": str(name), "arguments": arguments},
    }


def chat_messages(
    messages: Iterable[Mapping[str, Any]], *, developer_role: str = "developer"
) -> list[dict[str, Any]]:
    """lionflow chat dicts as Chat Completions messages: text content joined into one string,
    tool-call arguments as JSON strings. `developer_role` is what ``developer`` messages become
    (Groq has no developer role: ``"system"``)."""
    result: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        converted: dict[str, Any]
        if role in ("system", "developer", "user"):
            converted = {
                "role": developer_role if role == "developer" else role,
                "content": content_text(content),
            }
        elif role == "assistant":
            calls = message.get("tool_calls")
            converted = {"role": "assistant", "content": None if content is None else content_text(content)}
            if calls:
                converted["tool_calls"] = [_tool_call(call) for call in calls]
            elif content is None:
                converted["content"] = ""
        elif role == "tool":
            if not message.get("tool_call_id"):
                raise ConfigurationError(
                    f"a tool message needs the 'tool_call_id' it answers: {dict(message)!r}"
                )
            converted = {
                "role": "tool",
                "tool_call_id": str(message["tool_call_id"]),
                "content": content_text(content),
            }
        else:
            raise ConfigurationError(
                f"message role {role!r} is not supported; use system, developer, user, assistant or tool"
            )
        if message.get("name") and role != "tool":
            converted["name"] = message["name"]
        result.append(converted)
    return result


def chat_tools(tools: Iterable[Any]) -> list[dict[str, Any]]:
    """Tools in Chat Completions form. Tools already in that form are sent as given, so options such
    as ``strict`` survive; every other form is normalized."""
    tools = list(tools)
    result: list[dict[str, Any]] = []
    for tool, spec in zip(tools, tool_specs(tools), strict=True):
        if (
            isinstance(tool, Mapping)
            and tool.get("type") == "function"
            and isinstance(tool.get("function"), Mapping)
        ):
            result.append(dict(tool))
            continue
        function: dict[str, Any] = {"name": spec.name, "parameters": spec.parameters}
        if spec.description:
            function["description"] = spec.description
        result.append({"type": "function", "function": function})
    return result


def chat_tool_choice(choice: Any) -> str | dict[str, Any] | None:
    """A lionflow tool choice as the Chat Completions ``tool_choice`` value."""
    normalized = tool_choice(choice)
    if normalized is None:
        return None
    if normalized.mode == "tool":
        return {"type": "function", "function": {"name": normalized.name}}
    return normalized.mode


def chat_params(
    params: Mapping[str, Any], *, max_tokens_field: str, sdk_params: frozenset[str]
) -> dict[str, Any]:
    """Generation parameters as keyword arguments of ``chat.completions.create``.

    ``max_tokens`` is sent as `max_tokens_field`; tools and tool_choice are normalized, and a pydantic
    model class or a JSON schema as ``response_format`` becomes a ``json_schema`` response format
    (``strict`` only when the schema meets strict mode's rules, see `strict_ready`); other keys
    the SDK method knows pass unchanged, and keys it does not know go in the JSON body (``extra_body``)
    so that a compatible server's own parameters reach it.
    """
    arguments: dict[str, Any] = {}
    extra_body: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if key in _RESERVED:
            raise ConfigurationError(
                f"{key!r} is set by lionflow, not a request parameter (see iModel's arguments)"
            )
        if key == "max_tokens":
            arguments[max_tokens_field] = value
        elif key == "tools":
            arguments["tools"] = chat_tools(value)
        elif key == "tool_choice":
            arguments["tool_choice"] = chat_tool_choice(value)
        elif key == "response_format":
            # The SDK's create() refuses a model class (it wants parse()); the wire takes its schema.
            arguments["response_format"] = chat_response_format(value)
        elif key == "extra_body":
            extra_body = {**value, **extra_body}
        elif key in sdk_params:
            arguments[key] = value
        else:
            extra_body[key] = value
    if extra_body:
        arguments["extra_body"] = extra_body
    return arguments
