"""The request of ``POST /v1/responses`` (the OpenAI Responses API) as a lionflow model call.

``instructions`` become a system message and ``input`` items chat messages: ``message`` items with
their text parts, ``function_call`` items an assistant's tool calls (joined to the assistant message
before them, as Chat Completions has it), ``function_call_output`` items tool results. Flat function
tools become the nested form, ``max_output_tokens`` is ``max_tokens``, and ``text.format`` is a
``response_format``. What is wrong is a 400 naming the field (dotted, as pydantic's errors are).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lionflow.serve._context import client_params
from lionflow.serve._errors import APIError, from_validation, refuse_non_json_numbers

_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


def _bad(param: str, message: str) -> APIError:
    return APIError(400, f"{param}: {message}", param=param)


class ResponsesRequest(BaseModel):
    """The request body; fields the server does not name pass to the model as parameters."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: Any = None  # a string or a list of items, checked by `messages()` to name what is wrong
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, ge=0, le=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    stream: bool = False
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    background: bool | None = None

    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of ``instructions`` and ``input``."""
        return [*self.instruction_messages(), *self.input_messages()]

    def instruction_messages(self) -> list[dict[str, Any]]:
        """``instructions`` as a system message (none without)."""
        return [{"role": "system", "content": self.instructions}] if self.instructions else []

    def input_messages(self) -> list[dict[str, Any]]:
        """The chat messages of ``input``."""
        messages: list[dict[str, Any]] = []
        if isinstance(self.input, str) and self.input.strip():
            return [{"role": "user", "content": self.input}]
        if not isinstance(self.input, list) or not self.input:
            raise _bad("input", "give a non-empty string or a non-empty list of input items")
        for position, item in enumerate(self.input):
            _add_item(messages, item, f"input.{position}")
        if all(message["role"] in ("system", "developer") for message in messages):
            raise _bad("input", "the input has no message, function call or function call output")
        return messages

    def params(self) -> dict[str, Any]:
        """The model call's parameters."""
        named = {
            "max_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "tools": [_chat_tool(tool, f"tools.{n}") for n, tool in enumerate(self.tools)]
            if self.tools
            else None,
            "tool_choice": _chat_tool_choice(self.tool_choice),
            "response_format": _response_format(self.text),
        }
        extra = client_params(self.model_extra or {})
        return {key: value for key, value in named.items() if value is not None} | extra

    def text_format(self) -> dict[str, Any]:
        """The ``text.format`` the Response reports."""
        given = (self.text or {}).get("format")
        return dict(given) if isinstance(given, dict) else {"type": "text"}


def _content(content: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(param, "give a string or a list of input_text parts")
    parts: list[dict[str, Any]] = []
    for position, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "refusal":
            continue  # a refusal handed back in a conversation's history says nothing to the model
        if kind not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            raise _bad(
                f"{param}.{position}",
                f"content parts of type {kind!r} are not supported by this server; give input_text parts",
            )
        parts.append({"type": "text", "text": part["text"]})
    return parts


def _add_item(messages: list[dict[str, Any]], item: Any, param: str) -> None:
    if not isinstance(item, dict):
        raise _bad(param, "an input item must be an object")
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise _bad(f"{param}.role", "give user, assistant, system or developer")
        messages.append({"role": role, "content": _content(item.get("content"), f"{param}.content")})
    elif kind == "function_call":
        call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
        if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
            raise _bad(param, "a function_call item needs a call_id and a name")
        if not isinstance(arguments, str):
            raise _bad(f"{param}.arguments", "give the arguments as a JSON string")
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            # The message and calls of one assistant turn are one chat message, as Chat Completions has it.
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise _bad(f"{param}.call_id", "a function_call_output item needs the call_id it answers")
        output = _content(item.get("output"), f"{param}.output")
        messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
    elif kind != "reasoning":  # reasoning handed back in a conversation's history is not sent again
        raise _bad(f"{param}.type", f"input items of type {kind!r} are not supported by this server")


def _chat_tool(tool: dict[str, Any], param: str) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise _bad(f"{param}.type", "only function tools are supported by this server")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{param}.name", "a function tool needs a name")
    function = {"name": name, "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
    for key in ("description", "strict"):
        if tool.get(key) is not None:
            function[key] = tool[key]
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if isinstance(choice, dict) and choice.get("type") == "function":
        if not isinstance(choice.get("name"), str):
            raise _bad("tool_choice.name", "name the function to call")
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, dict):
        raise _bad("tool_choice", "give auto, none, required or {'type': 'function', 'name': ...}")
    return choice


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    given = (text or {}).get("format")
    if given is None:
        return None
    kind = given.get("type") if isinstance(given, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise _bad("text.format.type", "give text, json_object or json_schema")
    if not isinstance(given.get("schema"), dict):
        raise _bad("text.format.schema", "a json_schema format needs its schema (an object)")
    spec = {key: given[key] for key in ("name", "schema", "strict", "description") if key in given}
    return {"type": "json_schema", "json_schema": spec}


def parse(body: bytes) -> ResponsesRequest:
    """The request, or an `APIError` (400) naming what is wrong."""
    try:
        request = ResponsesRequest.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation(exc) from None
    refuse_non_json_numbers(body)
    if request.conversation is not None:
        raise _bad("conversation", "this server has no Conversations API: continue with previous_response_id")
    if request.background and request.store is False:
        raise _bad("background", "a background response is stored: it cannot have store false")
    return request
