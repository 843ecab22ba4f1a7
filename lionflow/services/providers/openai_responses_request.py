"""The request of ``responses.create`` (the OpenAI Responses API) from a lionflow `ModelRequest`:
system and developer messages become ``instructions``, the rest ``input`` items."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from openai.resources.responses import AsyncResponses

from lionflow.errors import ConfigurationError
from lionflow.services.providers._messages import ChatMessage, parse_messages
from lionflow.services.providers._params import (
    sdk_arguments,
    sdk_parameters,
    tool_choice,
    tool_fields,
    tool_list,
    tool_specs,
)
from lionflow.services.providers._structured import output_format, responses_format
from lionflow.services.providers.base import ModelRequest


def _items(message: ChatMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        # Tool results are strings on the wire; a structured result is sent as its JSON.
        call_id = message.require_call_id()
        return [{"type": "function_call_output", "call_id": call_id, "output": message.text}]
    items: list[dict[str, Any]] = []
    if message.text.strip():
        items.append({"type": "message", "role": message.role, "content": message.text})
    for call in message.tool_calls:
        if call.id is None:
            raise ConfigurationError(f"messages[{message.position}]: a tool call needs an 'id'")
        items.append(
            {"type": "function_call", "call_id": call.id, "name": call.name, "arguments": call.arguments}
        )
    return items


def responses_input(messages: Sequence[Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """lionflow chat messages (see `parse_messages`) as the Responses API's ``instructions`` and
    ``input`` items (messages, ``function_call`` and ``function_call_output``)."""
    conversation = parse_messages(messages)
    return conversation.system, [item for message in conversation.turns for item in _items(message)]


def _tools(tools: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for tool in tool_list(tools):
        if isinstance(tool, Mapping) and tool.get("type") not in (None, "function"):
            result.append(dict(tool))  # a built-in tool (web_search, file_search, ...): sent as given
            continue
        (spec,) = tool_specs([tool])
        source = tool.get("function", tool) if isinstance(tool, Mapping) else {}
        # The Responses API makes function tools strict by default, which rejects ordinary schemas
        # (pydantic's lack additionalProperties=false); strict only when the tool asks for it.
        strict = bool(source.get("strict", False)) if isinstance(source, Mapping) else False
        result.append(
            {
                "type": "function",
                "name": spec.name,
                "description": spec.description,
                "parameters": spec.parameters,
                "strict": strict,
            }
        )
    return result


_SDK_PARAMS = sdk_parameters(AsyncResponses.create)


def _tool_choice(value: Any, tools: list[Any]) -> str | dict[str, Any] | None:
    choice = tool_choice(value, tools)
    if choice is None:
        return None
    return {"type": "function", "name": choice.name} if choice.mode == "tool" else choice.mode


def request_arguments(request: ModelRequest) -> dict[str, Any]:
    """The keyword arguments of ``responses.create`` for `request` (the stream flag excluded)."""
    params = {key: value for key, value in request.params.items() if value is not None}
    for key in ("stop", "seed"):
        if params.pop(key, None) is not None:
            raise ConfigurationError(
                f"the OpenAI Responses API does not accept {key!r}; remove it, or use the Chat "
                "Completions endpoint (iModel(provider='openai') without endpoint='responses')"
            )
    instructions, items = responses_input(request.messages)
    given = params.pop("instructions", None)
    if given:
        instructions = f"{given}\n\n{instructions}" if instructions else str(given)
    kwargs: dict[str, Any] = {"model": request.model, "input": items}
    if instructions:
        kwargs["instructions"] = instructions
    max_tokens = params.pop("max_tokens", None)
    if max_tokens is not None:
        if params.get("max_output_tokens") is not None:
            raise ConfigurationError("give max_tokens or max_output_tokens, not both")
        kwargs["max_output_tokens"] = max_tokens
    kwargs |= tool_fields(params, _tools, _tool_choice)
    params.pop("stream", None)  # the mode is request.stream
    structure = output_format(params.pop("response_format", None))
    if structure is not None:
        text = dict(params.pop("text", None) or {})
        if text.get("format"):
            raise ConfigurationError("give response_format or text={'format': ...}, not both")
        kwargs["text"] = text | {"format": responses_format(structure)}
    return kwargs | sdk_arguments(params, _SDK_PARAMS)
