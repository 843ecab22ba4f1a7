"""Chat Completions requests: lionflow messages, tools and parameters in the form the OpenAI-style
chat API takes, shared by `openai_chat_request` and `groq_chat_request` (no SDK imported here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lionflow.errors import ConfigurationError
from lionflow.services.providers._messages import ChatMessage, ChatToolCall, SystemMessage, parse_messages
from lionflow.services.providers._params import stop_sequences, tool_choice, tool_list, tool_specs
from lionflow.services.providers._structured import chat_response_format

# Request keys the adapter sets itself; a parameter of the same name would clash with them.
_RESERVED = frozenset({"model", "messages", "stream"})


def _tool_call(call: ChatToolCall, position: int) -> dict[str, Any]:
    if call.id is None:
        raise ConfigurationError(f"messages[{position}]: a tool call needs an 'id' for Chat Completions")
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _chat_message(message: ChatMessage | SystemMessage, developer_role: str) -> dict[str, Any]:
    converted: dict[str, Any]
    if isinstance(message, SystemMessage):
        converted = {
            "role": developer_role if message.role == "developer" else message.role,
            "content": message.text,
        }
    elif message.role == "tool":
        return {"role": "tool", "tool_call_id": message.require_call_id(), "content": message.text}
    elif message.tool_calls:
        converted = {
            "role": "assistant",
            "content": None if message.null_content else message.text,
            "tool_calls": [_tool_call(call, message.position) for call in message.tool_calls],
        }
    else:
        converted = {"role": message.role, "content": message.text}
    if message.name:
        converted["name"] = message.name
    return converted


def chat_messages(messages: Sequence[Any], *, developer_role: str = "developer") -> list[dict[str, Any]]:
    """lionflow chat messages (see `parse_messages`) as Chat Completions messages: text content
    joined into one string, tool-call arguments as JSON strings. `developer_role` is what
    ``developer`` messages become (Groq has no developer role: ``"system"``)."""
    return [_chat_message(message, developer_role) for message in parse_messages(messages).messages]


def chat_tools(tools: Any) -> list[dict[str, Any]]:
    """Tools in Chat Completions form. Tools already in that form are sent as given, so options such
    as ``strict`` survive; every other form is normalized."""
    tools = tool_list(tools)
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


def chat_tool_choice(choice: Any, tools: Any) -> str | dict[str, Any] | None:
    """A lionflow tool choice, for a request that offers `tools`, as the Chat Completions
    ``tool_choice`` value (None: nothing to send; see `tool_choice`)."""
    normalized = tool_choice(choice, tool_list(tools))
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
            tools = chat_tools(value)
            if tools:
                arguments["tools"] = tools
        elif key == "stop":
            if stop_sequences(value):  # checked here; sent as given, a string or a list
                arguments["stop"] = value
        elif key == "tool_choice":
            choice = chat_tool_choice(value, params.get("tools"))
            if choice is not None:
                arguments["tool_choice"] = choice
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
