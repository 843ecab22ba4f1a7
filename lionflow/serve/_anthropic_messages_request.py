"""The request of ``POST /v1/messages`` (the Anthropic Messages API) in lionflow's terms: its
messages as chat dicts (system, user, assistant with ``tool_calls``, tool results as ``tool``
messages) and its parameters. Image and document blocks are refused with a 400 naming the block:
lionflow's message form carries text only. Earlier ``thinking`` blocks of assistant turns are not
sent back (the chat form has no place for them, nor for their signatures)."""

from __future__ import annotations

import json
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lionflow.serve._context import client_params
from lionflow.serve._errors import APIError, from_validation, refuse_non_json_numbers
from lionflow.services.imodel import iModel


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class _ToolChoice(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None

    @model_validator(mode="after")
    def _named(self) -> Self:
        if self.type == "tool" and not self.name:
            raise ValueError("a tool_choice of type 'tool' needs the tool's 'name'")
        return self


class MessagesRequest(BaseModel):
    """The request body; fields the server does not name pass to the model as parameters."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: _ToolChoice | None = None
    stream: bool = False
    metadata: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None

    def chat_messages(self) -> list[dict[str, Any]]:
        """The conversation in lionflow's chat-dict form; a 400 `APIError` for a block it cannot carry."""
        chat: list[dict[str, Any]] = []
        if self.system:
            chat.append({"role": "system", "content": _texts(self.system, "system")})
        for position, message in enumerate(self.messages):
            chat.extend(_chat_message(message, f"messages.{position}.content"))
        return chat

    def params(self, model: iModel) -> dict[str, Any]:
        """The model call's parameters."""
        choice = self.tool_choice
        named = {
            "max_tokens": self.max_tokens,
            "stop": self.stop_sequences or None,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "tools": [_tool(tool, f"tools.{n}") for n, tool in enumerate(self.tools)] if self.tools else None,
            "tool_choice": _tool_choice(choice) if choice is not None else None,
            "thinking": self.thinking,
            "metadata": self.metadata if model.provider == "anthropic" else None,
        }
        extra = client_params(self.model_extra or {})
        return {key: value for key, value in named.items() if value is not None} | extra


def _refuse(where: str, message: str) -> APIError:
    return APIError(400, f"{where}: {message}", param=where)


def _text(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _refuse(where, "a text block needs a string 'text'")
    return text


def _texts(content: Any, where: str) -> str | list[dict[str, Any]]:
    """A string as given; text blocks as lionflow's text parts; anything else a 400."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _refuse(where, "must be a string or a list of text blocks")
    parts = []
    for n, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise _refuse(f"{where}.{n}", f"{kind!r} blocks are not supported here; send text blocks")
        parts.append({"type": "text", "text": _text(block, f"{where}.{n}")})
    return parts


def _chat_message(message: _Message, where: str) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    texts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for n, block in enumerate(message.content):
        at, kind = f"{where}.{n}", block.get("type")
        if kind == "text":
            texts.append({"type": "text", "text": _text(block, at)})
        elif kind == "tool_use" and message.role == "assistant":
            call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
            if not (isinstance(call_id, str) and call_id and isinstance(name, str) and name):
                raise _refuse(at, "a tool_use block needs a string 'id' and 'name'")
            if not isinstance(arguments, dict):
                raise _refuse(at, "a tool_use block's 'input' must be an object")
            function = {"name": name, "arguments": json.dumps(arguments)}
            calls.append({"id": call_id, "type": "function", "function": function})
        elif kind == "tool_result" and message.role == "user":
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str) or not call_id:
                raise _refuse(at, "a tool_result block needs the 'tool_use_id' it answers")
            content = _texts(block.get("content", ""), f"{at}.content")
            results.append({"role": "tool", "tool_call_id": call_id, "content": content})
        elif kind in ("thinking", "redacted_thinking") and message.role == "assistant":
            continue  # (see the module's docstring)
        else:
            raise _refuse(at, f"{kind!r} blocks are not supported in a {message.role} message here")
    if message.role == "user":
        # Anthropic puts tool results first in the user turn; they answer the calls just before.
        return results + ([{"role": "user", "content": texts}] if texts or not results else [])
    assistant: dict[str, Any] = {"role": "assistant", "content": texts}
    if calls:
        assistant["tool_calls"] = calls
    return [assistant]


def _tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    if tool.get("type") not in (None, "custom"):
        return tool  # a server tool of Anthropic's (web search, ...), for an Anthropic model
    name, schema = tool.get("name"), tool.get("input_schema")
    if not isinstance(name, str) or not name or not isinstance(schema, dict):
        raise _refuse(where, "a tool needs a string 'name' and an 'input_schema' object")
    function = {"name": name, "description": str(tool.get("description") or ""), "parameters": schema}
    return {"type": "function", "function": function}


def _tool_choice(choice: _ToolChoice) -> str | dict[str, Any]:
    if choice.type == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return "required" if choice.type == "any" else choice.type


def parse(body: bytes) -> MessagesRequest:
    """The request, or an `APIError` (400) naming what is wrong."""
    try:
        request = MessagesRequest.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation(exc) from None
    refuse_non_json_numbers(body)
    return request
