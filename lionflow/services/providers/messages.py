"""A conversation's messages in one neutral form, parsed once per request; adapters only render it.

lionflow accepts chat messages as OpenAI-style dicts (and `Message.chat_msg`, which produces them):
``role`` (system, developer, user, assistant, tool; ``function`` is read as a tool result),
``content`` (a string, or a list of text parts ``{"type": "text" | "input_text" | "output_text",
"text": ...}`` or strings; a tool result may also be an object), an optional ``name``, assistant
``tool_calls`` in the nested form ``{"id", "type": "function", "function": {"name", "arguments"}}``
or the flat form ``{"id", "name", "arguments"}`` (arguments as a JSON string or an object), and
the ``tool_call_id`` a tool result answers. Every adapter renders from `parse_messages`, so one
history reads the same on every endpoint, and a malformed one fails here, before any request.

A message that carries nothing (no text beyond whitespace, no tool call: a turn that failed before
its first chunk, an empty refusal) stays in the session but is left out of the request, since some
APIs reject empty content blocks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lionflow.errors import ConfigurationError
from lionflow.services.providers._common import parse_arguments

__all__ = ["ChatMessage", "ChatToolCall", "Conversation", "SystemMessage", "parse_messages"]

Role = Literal["user", "assistant", "tool"]

_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
_ROLES = "system, developer, user, assistant or tool"


@dataclass(frozen=True, slots=True)
class ChatToolCall:
    """A tool call an assistant message made. `arguments` is the JSON text (as given, or an object
    given as such, dumped); `thought_signature` is the base64 signature Gemini wants back with it
    (``extra_content.google.thought_signature``); `id` may be None only where the API needs none."""

    id: str | None
    name: str
    arguments: str
    thought_signature: str | None = None

    def arguments_object(self) -> dict[str, Any]:
        """The arguments as an object; `ConfigurationError` when they are not a JSON object."""
        return parse_arguments(self.arguments)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One user, assistant or tool message of a conversation (system text is `Conversation.system`).

    `text` is the content's text parts joined; `null_content` says an assistant turn with tool
    calls gave its content as None rather than a string (Chat Completions sends it back as given).
    A tool result has `tool_call_id` (None only for a legacy ``function`` message, which names its
    function in `name`) and, when its content was an object, that object as `output` (`text` is
    then its JSON). `position` is the index in the list given, for error messages.
    """

    role: Role
    text: str
    position: int
    tool_calls: tuple[ChatToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    output: dict[str, Any] | None = None
    null_content: bool = False

    def require_call_id(self) -> str:
        """The `tool_call_id` of this tool result; `ConfigurationError` when it has none."""
        if self.tool_call_id is None:
            raise ConfigurationError(
                f"messages[{self.position}]: a tool result (a 'tool' or 'function' message) needs the "
                "'tool_call_id' of the call it answers"
            )
        return self.tool_call_id


@dataclass(frozen=True, slots=True)
class SystemMessage:
    """A system or developer message, kept in place for the APIs that take them in place."""

    role: Literal["system", "developer"]
    text: str
    position: int
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    """A parsed conversation: `messages` in order with system and developer messages in place,
    `turns` the same without them, and `system` their texts joined by blank lines (None if none)."""

    messages: tuple[ChatMessage | SystemMessage, ...]
    turns: tuple[ChatMessage, ...]
    system: str | None


def _text(content: Any, position: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and part.get("type") in _TEXT_PARTS:
                text = part.get("text")
                if not isinstance(text, str):
                    raise ConfigurationError(f"messages[{position}]: a text part needs a string 'text'")
                texts.append(text)
            else:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise ConfigurationError(
                    f"messages[{position}]: content part of type {kind!r} is not supported; "
                    "use text parts ({'type': 'text', 'text': ...})"
                )
        return "".join(texts)
    raise ConfigurationError(
        f"messages[{position}]: 'content' must be a string or a list of text parts, not {content!r}"
    )


def _signature(call: Mapping[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, Mapping) else None
    value = google.get("thought_signature") if isinstance(google, Mapping) else None
    return str(value) if value else None


def _tool_call(call: Any, position: int) -> ChatToolCall:
    if not isinstance(call, Mapping):
        raise ConfigurationError(f"messages[{position}]: a tool call must be a dict, not {call!r}")
    function = call.get("function")
    source = function if isinstance(function, Mapping) else call  # nested, or the flat form
    name = source.get("name")
    if not name or not isinstance(name, str):
        raise ConfigurationError(
            f"messages[{position}]: a tool call needs a function 'name' (nested "
            f"{{'id', 'type': 'function', 'function': {{'name', 'arguments'}}}} or flat "
            f"{{'id', 'name', 'arguments'}}): {dict(call)!r}"
        )
    arguments = source.get("arguments")
    if arguments is None or arguments == "":
        text = "{}"
    elif isinstance(arguments, str):
        text = arguments
    elif isinstance(arguments, Mapping):
        text = json.dumps(dict(arguments))
    else:
        raise ConfigurationError(
            f"messages[{position}]: tool-call arguments must be a JSON string or an object, not {arguments!r}"
        )
    call_id = call.get("id")
    return ChatToolCall(None if call_id is None else str(call_id), name, text, _signature(call))


def _tool_result(message: Mapping[str, Any], role: str, position: int) -> ChatMessage:
    call_id = message.get("tool_call_id")
    name = message.get("name")
    if not call_id and not (role == "function" and name):
        raise ConfigurationError(
            f"messages[{position}]: a tool result (a 'tool' or 'function' message) needs the "
            "'tool_call_id' of the call it answers"
        )
    content = message.get("content")
    output: dict[str, Any] | None = None
    if isinstance(content, Mapping):
        output = dict(content)
        text = json.dumps(output)
    elif content is None:
        raise ConfigurationError(
            f"messages[{position}]: a tool result needs 'content' (a string, text parts or an object)"
        )
    else:
        text = _text(content, position)
    return ChatMessage(
        "tool",
        text,
        position,
        tool_call_id=str(call_id) if call_id else None,
        name=str(name) if name else None,
        output=output,
    )


def parse_messages(messages: Sequence[Any]) -> Conversation:
    """`messages` in the neutral form; `ConfigurationError` saying what was expected for anything
    malformed (not a dict, no or unknown role, missing content, a tool call without a name, ...).

    Messages with nothing to send (see the module docstring) are left out.
    """
    ordered: list[ChatMessage | SystemMessage] = []
    turns: list[ChatMessage] = []
    system: list[str] = []
    for position, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ConfigurationError(
                f"messages[{position}] is a {type(message).__name__}; "
                "expected a chat dict like {'role': 'user', 'content': '...'}"
            )
        role = message.get("role")
        name = message.get("name")
        name = str(name) if name else None
        if role in ("tool", "function"):
            result = _tool_result(message, role, position)
            ordered.append(result)
            turns.append(result)
            continue
        if role not in ("system", "developer", "user", "assistant"):
            raise ConfigurationError(f"messages[{position}]: role {role!r} is not supported; use {_ROLES}")
        content = message.get("content")
        raw_calls = message.get("tool_calls") if role == "assistant" else None
        if raw_calls is not None and not isinstance(raw_calls, list | tuple):
            raise ConfigurationError(f"messages[{position}]: 'tool_calls' must be a list, not {raw_calls!r}")
        calls = tuple(_tool_call(call, position) for call in raw_calls or ())
        if content is None:
            if not calls:
                raise ConfigurationError(
                    f"messages[{position}]: a {role} message needs 'content' (a string or a list of "
                    "text parts)" + (" or 'tool_calls'" if role == "assistant" else "")
                )
            text = ""
        else:
            text = _text(content, position)
        if not calls and not text.strip():
            continue  # nothing to send; the record stays where it is kept
        if role == "system" or role == "developer":
            system.append(text)
            ordered.append(SystemMessage(role, text, position, name))
        else:
            parsed = ChatMessage(
                role, text, position, tool_calls=calls, name=name, null_content=content is None
            )
            ordered.append(parsed)
            turns.append(parsed)
    if not ordered:
        raise ConfigurationError(
            "messages has nothing to send: every message is empty (a model call needs at least one "
            "message with text or tool calls)"
        )
    return Conversation(tuple(ordered), tuple(turns), "\n\n".join(system) if system else None)
