"""The request side of the Gemini adapter: chat messages and parameters as google-genai types."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import pydantic
from google.genai import _common, types
from google.genai import models as genai_models

from lionflow.errors import ConfigurationError
from lionflow.services.providers._messages import ChatMessage, ChatToolCall, parse_messages
from lionflow.services.providers._params import (
    stop_sequences,
    tool_choice,
    tool_fields,
    tool_list,
    tool_specs,
)
from lionflow.services.providers._structured import OutputFormat, output_format

_CONFIG_FIELDS = frozenset(types.GenerateContentConfig.model_fields)

# Tool-call ids the adapter makes up (``call_<n>``) when Gemini sends none: they are not sent back.
_SYNTHETIC_ID = re.compile(r"call_\d+")


def _signature(call: ChatToolCall) -> bytes | None:
    """The thought signature Gemini 3 needs back with its function calls, carried the way Google's
    OpenAI-compatible API does: ``extra_content.google.thought_signature`` (base64)."""
    if call.thought_signature is None:
        return None
    try:
        return base64.b64decode(call.thought_signature)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise ConfigurationError(f"thought_signature is not base64: {call.thought_signature!r}") from exc


def _native_id(call_id: str | None) -> str | None:
    return call_id if call_id and not _SYNTHETIC_ID.fullmatch(call_id) else None


def _function_call(call: ChatToolCall) -> types.Part:
    return types.Part(
        function_call=types.FunctionCall(
            name=call.name, args=call.arguments_object(), id=_native_id(call.id)
        ),
        thought_signature=_signature(call),
    )


def _function_response(message: ChatMessage, names: Mapping[str, str]) -> types.Part:
    call_id = message.tool_call_id
    name = (names.get(call_id) if call_id else None) or message.name
    if not name:
        raise ConfigurationError(
            f"messages[{message.position}]: a tool result needs the 'tool_call_id' of an earlier "
            "assistant tool call"
        )
    response = message.output
    if response is None:
        with contextlib.suppress(ValueError):
            value = json.loads(message.text)
            response = value if isinstance(value, dict) else None
        if response is None:
            response = {"result": message.text}
    return types.Part(
        function_response=types.FunctionResponse(name=name, response=response, id=_native_id(call_id))
    )


def convert_messages(messages: Sequence[Any]) -> tuple[str | None, list[types.Content]]:
    """lionflow chat messages (see `parse_messages`) as Gemini's ``(system_instruction, contents)``.

    System and developer messages become the system instruction; assistant messages become
    ``model`` contents with text and ``function_call`` parts; tool results become ``user`` contents
    with ``function_response`` parts, named after the assistant tool call they answer. Consecutive
    contents of the same role are merged.
    """
    conversation = parse_messages(messages)
    contents: list[types.Content] = []
    names: dict[str, str] = {}  # tool_call id -> function name, the latest assistant call wins
    for message in conversation.turns:
        parts: list[types.Part] = []
        if message.role == "tool":
            parts.append(_function_response(message, names))
        else:
            if message.text.strip():  # Gemini rejects empty text parts
                parts.append(types.Part(text=message.text))
            for call in message.tool_calls:
                if call.id:
                    names[call.id] = call.name
                parts.append(_function_call(call))
        role = "model" if message.role == "assistant" else "user"
        if contents and contents[-1].role == role and contents[-1].parts is not None:
            contents[-1].parts.extend(parts)
        else:
            contents.append(types.Content(role=role, parts=parts))
    return conversation.system, contents


def _tools(tools: Any) -> list[types.Tool]:
    declarations: list[types.FunctionDeclaration] = []
    native: list[types.Tool] = []
    for tool in tool_list(tools):
        if isinstance(tool, types.Tool):  # Gemini's own tools (google_search, code_execution) as given
            native.append(tool)
            continue
        (spec,) = tool_specs([tool])
        # parameters_json_schema takes JSON Schema as is; `parameters` wants Gemini's Schema subset.
        declarations.append(
            types.FunctionDeclaration(
                name=spec.name, description=spec.description or None, parameters_json_schema=spec.parameters
            )
        )
    return ([types.Tool(function_declarations=declarations)] if declarations else []) + native


def _tool_config(value: Any, tools: list[Any]) -> types.ToolConfig | None:
    choice = tool_choice(value, tools)
    if choice is None:
        return None
    mode = {"auto": "AUTO", "none": "NONE"}.get(choice.mode, "ANY")
    names = [choice.name] if choice.mode == "tool" and choice.name else None
    return types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(
            mode=types.FunctionCallingConfigMode(mode), allowed_function_names=names
        )
    )


def _response_format(spec: OutputFormat | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """The config fields asking for `spec`: JSON output, and the schema in ``response_json_schema``,
    which takes JSON Schema as is (``response_schema`` wants Gemini's OpenAPI subset)."""
    if spec is None or spec.kind == "text":
        return {}
    if "response_schema" in params or "response_json_schema" in params:
        raise ConfigurationError(
            "give response_format or Gemini's response_schema/response_json_schema, not both"
        )
    fields: dict[str, Any] = {"response_mime_type": "application/json"}
    if spec.kind == "json_schema":
        fields["response_json_schema"] = spec.schema
    return fields


def generate_config(params: Mapping[str, Any], system: str | None) -> types.GenerateContentConfig:
    """The ``GenerateContentConfig`` for a call's parameters and system instruction.

    lionflow's names are mapped (max_tokens, stop, tools, tool_choice, response_format); every other
    key must be a field of ``GenerateContentConfig`` (``thinking_config``, ``top_k``, ...).
    """
    params = {key: value for key, value in params.items() if value is not None}
    fields: dict[str, Any] = {} if system is None else {"system_instruction": system}
    if "max_tokens" in params:
        fields["max_output_tokens"] = params.pop("max_tokens")
    stop = stop_sequences(params.pop("stop", None))
    if stop:
        fields["stop_sequences"] = stop
    fields |= tool_fields(params, _tools, _tool_config, choice_key="tool_config")
    fields |= _response_format(output_format(params.pop("response_format", None)), params)
    for key, value in params.items():
        if key not in _CONFIG_FIELDS:
            raise ConfigurationError(
                f"parameter {key!r} is not a Gemini GenerateContentConfig field; "
                "Gemini takes no other request arguments"
            )
        fields[key] = value
    # lionflow runs tools and retries itself: the SDK's function-calling loop and its automatic
    # continuation (extra requests inside one call) stay off unless asked for.
    fields.setdefault("automatic_function_calling", types.AutomaticFunctionCallingConfig(disable=True))
    fields.setdefault("automatic_continuation", False)
    try:
        return types.GenerateContentConfig(**fields)
    except pydantic.ValidationError as exc:
        raise ConfigurationError(f"invalid Gemini parameters: {exc}") from exc


class _DeveloperApi:
    """What google-genai's request converters read of its client: the Gemini Developer API (not
    Vertex AI, which would put a project and location in the path)."""

    vertexai = False
    project = None
    location = None


_DEVELOPER_API = _DeveloperApi()


def wire_request(
    model: str, contents: list[types.Content], config: types.GenerateContentConfig, *, stream: bool
) -> tuple[str, dict[str, Any]]:
    """The path (after the API version) and the JSON body google-genai sends for
    ``generate_content(_stream)(model=, contents=, config=)``, built by its own converter (camelCase
    keys, bytes in base64, model names as ``models/<name>``), as the native transport sends them.
    Per call, never per delta. The call's ``http_options`` (``config.http_options``) are left to
    the caller: they are not part of the body but for their ``extra_body``.
    """
    parameters = types._GenerateContentParameters(model=model, contents=contents, config=config)
    body = genai_models._GenerateContentParameters_to_mldev(_DEVELOPER_API, parameters, None, parameters)  # type: ignore[arg-type]
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    url = body.get("_url")
    path = f"{{model}}:{method}".format_map(url) if url else f"{{model}}:{method}"
    query = body.get("_query")
    if query:
        path = f"{path}?{urlencode(query)}"
    body.pop("config", None)
    body = _common.encode_unserializable_types(_common.convert_to_dict(body))
    wire: dict[str, Any] = {key: value for key, value in body.items() if not key.startswith("_")}
    return path, wire
