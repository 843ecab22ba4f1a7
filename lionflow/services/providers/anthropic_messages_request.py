"""The request side of the Anthropic adapter: chat messages, tools, parameters and structured output
as the keyword arguments of ``messages.create()``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anthropic
from anthropic.resources.messages import AsyncMessages

from lionflow.errors import ConfigurationError
from lionflow.services.providers._messages import ChatMessage, ChatToolCall, parse_messages
from lionflow.services.providers._params import (
    sdk_arguments,
    sdk_parameters,
    stop_sequences,
    tool_choice,
    tool_fields,
    tool_list,
    tool_specs,
)
from lionflow.services.providers._structured import OutputFormat, output_format
from lionflow.services.providers.base import ModelRequest

DEFAULT_MAX_TOKENS = 4096
"""Sent when the call gives no ``max_tokens``: the Messages API requires one."""

# Keyword arguments `messages.create()` takes; any other parameter travels in `extra_body`, so that
# wire parameters this SDK version does not list (temperature, top_p, top_k in SDK 2.x) still arrive.
_SDK_ARGUMENTS = sdk_parameters(AsyncMessages.create)


def _tool_use(call: ChatToolCall, position: int) -> dict[str, Any]:
    if call.id is None:
        raise ConfigurationError(f"messages[{position}]: a tool call needs an 'id' for Anthropic")
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments_object()}


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.require_call_id()}
        if message.text:  # the content is optional; an empty one is left out rather than sent empty
            result["content"] = message.text
        return [result]
    # The API rejects text blocks that are empty or only whitespace: a tool-calling turn often has no text.
    blocks = [{"type": "text", "text": message.text}] if message.text.strip() else []
    return blocks + [_tool_use(call, message.position) for call in message.tool_calls]


def convert_messages(messages: Sequence[Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """lionflow chat messages (see `parse_messages`) as Anthropic's ``(system, messages)``.

    System and developer messages become `system`; assistant tool calls become ``tool_use`` blocks;
    tool results become ``tool_result`` blocks of a user message. Consecutive messages of the same
    role are merged, since the API wants user and assistant turns to alternate.
    """
    conversation = parse_messages(messages)
    converted: list[dict[str, Any]] = []
    for message in conversation.turns:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if converted and converted[-1]["role"] == role:
            converted[-1]["content"].extend(blocks)
        else:
            converted.append({"role": role, "content": blocks})
    _trim_prefill(converted)
    if not converted:
        raise ConfigurationError(
            "Anthropic needs at least one user or assistant message besides the system prompt"
        )
    return conversation.system, converted


def _trim_prefill(converted: list[dict[str, Any]]) -> None:
    """Strip the trailing whitespace of a final assistant message (a prefill the answer continues):
    the API rejects one that ends in whitespace. Non-blank text stays non-blank."""
    if not converted or converted[-1]["role"] != "assistant":
        return
    last = converted[-1]["content"][-1]
    if last["type"] == "text":
        last["text"] = last["text"].rstrip()


def _tools(tools: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for tool in tool_list(tools):
        # Anthropic's server tools ({"type": "web_search_20250305", ...}) are sent as given.
        if isinstance(tool, Mapping) and tool.get("type") not in (None, "function", "custom"):
            result.append(dict(tool))
            continue
        (spec,) = tool_specs([tool])
        entry: dict[str, Any] = {"name": spec.name, "input_schema": spec.parameters}
        if spec.description:
            entry["description"] = spec.description
        result.append(entry)
    return result


def _tool_choice(value: Any, tools: list[Any]) -> dict[str, Any] | None:
    choice = tool_choice(value, tools)
    if choice is None:
        return None
    if choice.mode == "tool":
        return {"type": "tool", "name": choice.name}
    return {"type": "any" if choice.mode == "required" else choice.mode}


def request_arguments(request: ModelRequest) -> tuple[dict[str, Any], str | None]:
    """The keyword arguments of ``messages.create()`` for `request` (without ``stream``), and the
    name of the tool forced to carry a structured answer (None when the call asks for none)."""
    # `request.stream` alone decides the mode; a stray `stream` parameter must not override it.
    params = {key: value for key, value in request.params.items() if value is not None and key != "stream"}
    if "seed" in params:
        raise ConfigurationError("Anthropic's Messages API has no 'seed' parameter; remove seed=")
    system, messages = convert_messages(request.messages)
    arguments: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": params.pop("max_tokens", DEFAULT_MAX_TOKENS),
    }
    if system is not None:
        arguments["system"] = system
    stop = stop_sequences(params.pop("stop", None))
    if any(not sequence.strip() for sequence in stop):
        raise ConfigurationError(f"Anthropic rejects stop sequences of only whitespace: {stop!r}")
    if stop:
        arguments["stop_sequences"] = stop
    arguments |= tool_fields(params, _tools, _tool_choice)
    answer_tool = _structured_output(output_format(params.pop("response_format", None)), arguments, params)
    return arguments | sdk_arguments(params, _SDK_ARGUMENTS), answer_tool


def _structured_output(
    spec: OutputFormat | None, arguments: dict[str, Any], params: dict[str, Any]
) -> str | None:
    """Ask for `spec` in `arguments`; the name of the forced answer tool, if that is the way taken.

    Anthropic has no JSON mode that every Claude model takes. The way every model takes is one
    tool whose input schema is the answer's schema, forced with ``tool_choice``: its input streams
    as tool-call fragments, and the call's structured result is read from them. A forced tool cannot
    live beside the caller's own tools or tool_choice, nor with extended thinking (the API refuses
    forced tool use with thinking), so then Claude's own structured outputs are asked for instead
    (``output_config.format``, newer models only), and the JSON comes as text.
    """
    if spec is None or spec.kind == "text":
        return None
    if spec.kind == "json_object":
        raise ConfigurationError(
            "Anthropic has no JSON mode without a schema: give response_format a pydantic model class "
            "or a JSON schema"
        )
    thinking = params.get("thinking")
    thinking_on = isinstance(thinking, Mapping) and thinking.get("type") not in (None, "disabled")
    if "tools" in arguments or "tool_choice" in arguments or thinking_on:
        config = dict(params.pop("output_config", None) or {})
        if config.get("format"):
            raise ConfigurationError("give response_format or output_config={'format': ...}, not both")
        try:
            # The SDK's own rewrite into the schema subset structured outputs accept.
            schema = anthropic.transform_schema(spec.schema)
        except ValueError as error:
            raise ConfigurationError(f"response_format schema not usable by Anthropic: {error}") from error
        arguments["output_config"] = config | {"format": {"type": "json_schema", "schema": schema}}
        return None
    if spec.schema.get("type") != "object":
        raise ConfigurationError(
            "Anthropic's structured output is a tool input, which must be an object: the response_format "
            f"schema has type {spec.schema.get('type')!r}"
        )
    tool: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description or "Give your answer as the input of this tool.",
        "input_schema": spec.schema,
    }
    arguments["tools"] = [tool]
    arguments["tool_choice"] = {"type": "tool", "name": spec.name}
    return spec.name
