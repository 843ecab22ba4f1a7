"""A conversation's messages in one neutral form, parsed once per request; adapters only render it.

lionflow accepts chat messages as OpenAI-style dicts (and `Message.chat_msg`, which produces them):
``role`` (system, developer, user, assistant, tool; ``function`` is read as a tool result),
``content`` (a string, or a list of text parts ``{"type": "text" | "input_text" | "output_text",
"text": ...}`` or strings; a tool result may also be an object), an optional ``name``, assistant
``tool_calls`` in the nested form ``{"id", "type": "function", "function": {"name", "arguments"}}``
or the flat form ``{"id", "name", "arguments"}`` (arguments as a JSON string or an object), and
the ``tool_call_id`` a tool result answers. Every adapter renders from `parse_messages`, so one
history reads the same on every endpoint, and a malformed one fails here, before any request.

What an API would reject is left out of the request, while the session keeps the record as it is:

- a message that carries nothing (no text beyond whitespace, no tool call: a turn that failed before
  its first chunk, an empty refusal), since some APIs reject empty content blocks;
- a tool call that no later tool result answers (a turn whose calls were never run), and a tool
  result whose call is not in the conversation: every API rejects either.

Every tool call sent is followed right away by its results: consecutive assistant messages that
make tool calls (lionflow's own form for parallel calls: one `ActionRequestContent` per call) are
one assistant turn, and a message found between a call and its result (a user's text, a system
message) is sent after the results. Text must be valid Unicode, and object arguments and results
JSON-encodable; anything else is a `ConfigurationError` here, before any request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from lionflow.errors import ConfigurationError
from lionflow.services.providers._params import parse_arguments

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


def _unicode(text: str, position: int, what: str) -> str:
    """`text`, checked to be encodable: a lone surrogate (from a bad decode) fails every request."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ConfigurationError(
            f"messages[{position}]: {what} is not valid Unicode text ({error.reason} at index "
            f"{error.start}: {text[error.start : error.end]!r}); decode it properly or remove that character"
        ) from error
    return text


def _json(value: Mapping[str, Any], position: int, what: str) -> str:
    """An object as JSON text; `ConfigurationError` when a value has no JSON form (a date, NaN, ...)."""
    try:
        return json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ConfigurationError(
            f"messages[{position}]: {what} must hold only JSON values (str, int, float, bool, None, "
            f"lists, dicts; no NaN or infinity): {error}"
        ) from error


def _call_id(value: Any, position: int, what: str) -> str | None:
    """An id as text (``0`` is ``"0"``); None when absent, `ConfigurationError` when empty."""
    if value is None:
        return None
    text = str(value)
    if not text:
        raise ConfigurationError(f"messages[{position}]: {what} must not be empty")
    return _unicode(text, position, what)


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
        text = _unicode(arguments, position, "tool-call arguments")
    elif isinstance(arguments, Mapping):
        text = _unicode(_json(arguments, position, "tool-call arguments"), position, "tool-call arguments")
    else:
        raise ConfigurationError(
            f"messages[{position}]: tool-call arguments must be a JSON string or an object, not {arguments!r}"
        )
    call_id = _call_id(call.get("id"), position, "a tool call's 'id'")
    return ChatToolCall(call_id, _unicode(name, position, "a tool call's name"), text, _signature(call))


def _tool_result(message: Mapping[str, Any], role: str, position: int) -> ChatMessage:
    call_id = _call_id(message.get("tool_call_id"), position, "'tool_call_id'")
    name = message.get("name")
    if call_id is None and not (role == "function" and name):
        raise ConfigurationError(
            f"messages[{position}]: a tool result (a 'tool' or 'function' message) needs the "
            "'tool_call_id' of the call it answers"
        )
    content = message.get("content")
    output: dict[str, Any] | None = None
    if isinstance(content, Mapping):
        output = dict(content)
        text = _json(output, position, "a tool result object")
    elif content is None:
        raise ConfigurationError(
            f"messages[{position}]: a tool result needs 'content' (a string, text parts or an object)"
        )
    else:
        text = _text(content, position)
    return ChatMessage(
        "tool",
        _unicode(text, position, "a tool result"),
        position,
        tool_call_id=call_id,
        name=str(name) if name else None,
        output=output,
    )


@dataclass(slots=True)
class _Exchange:
    """An assistant turn that makes tool calls, the results that answer them, and the messages found
    between the call and its last result (sent after the results)."""

    assistant: ChatMessage
    results: list[ChatMessage] = field(default_factory=list)
    between: list[ChatMessage | SystemMessage] = field(default_factory=list)
    open: list[int] = field(default_factory=list)  # indices of the calls no result answers yet

    def __post_init__(self) -> None:
        self.open = list(range(len(self.assistant.tool_calls)))

    def extend(self, message: ChatMessage) -> bool:
        """Take `message`'s calls into this turn when it follows the assistant message directly
        (lionflow's form for parallel calls is one message per call)."""
        if self.results or self.between:
            return False
        first = self.assistant
        text = "\n\n".join(part for part in (first.text, message.text) if part.strip())
        self.assistant = replace(
            first,
            text=text,
            tool_calls=first.tool_calls + message.tool_calls,
            null_content=first.null_content and message.null_content,
        )
        self.open += range(len(first.tool_calls), len(self.assistant.tool_calls))
        return True

    def answer(self, result: ChatMessage) -> bool:
        """Take `result` when it answers one of the open calls: by id, or, for a legacy ``function``
        message without one, by name (it then answers under that call's id)."""
        for index in self.open:
            call = self.assistant.tool_calls[index]
            if result.tool_call_id is not None:
                matches = call.id == result.tool_call_id
            else:
                matches = call.name == result.name
            if matches:
                self.open.remove(index)
                self.results.append(replace(result, tool_call_id=call.id))
                return True
        return False

    def close(self) -> Iterator[ChatMessage | SystemMessage]:
        """The turn with only its answered calls (left out if nothing is left), its results, then
        the messages found between."""
        calls = self.assistant.tool_calls
        answered = tuple(call for index, call in enumerate(calls) if index not in self.open)
        if answered or self.assistant.text.strip():
            yield replace(self.assistant, tool_calls=answered)
        yield from self.results
        yield from self.between


def _answered(messages: list[ChatMessage | SystemMessage]) -> list[ChatMessage | SystemMessage]:
    """`messages` with every tool call sent followed by its results, and without the calls no result
    answers and the results no call asked for (see the module docstring)."""
    paired: list[ChatMessage | SystemMessage] = []
    exchange: _Exchange | None = None
    for message in messages:
        calls = isinstance(message, ChatMessage) and message.role == "assistant" and message.tool_calls
        if isinstance(message, ChatMessage) and calls:
            if exchange is not None and exchange.extend(message):
                continue
            if exchange is not None:
                paired += exchange.close()
            exchange = _Exchange(message)
        elif isinstance(message, ChatMessage) and message.role == "tool":
            if exchange is not None:
                exchange.answer(message)  # a result no open call asked for is left out
        elif exchange is not None and exchange.open:
            exchange.between.append(message)
        else:
            if exchange is not None:
                paired += exchange.close()
                exchange = None
            paired.append(message)
    if exchange is not None:
        paired += exchange.close()
    return paired


def _unpaired(message: ChatMessage | SystemMessage) -> str:
    if isinstance(message, ChatMessage) and message.role == "tool":
        return (
            f"messages[{message.position}] is a tool result whose 'tool_call_id' "
            f"({message.tool_call_id!r}) answers no earlier tool call"
        )
    return f"messages[{message.position}] makes tool calls that no tool result answers"


def parse_messages(messages: Sequence[Any]) -> Conversation:
    """`messages` in the neutral form; `ConfigurationError` saying what was expected for anything
    malformed (not a dict, no or unknown role, missing content, a tool call without a name, ...).

    Messages with nothing to send (see the module docstring) are left out.
    """
    ordered: list[ChatMessage | SystemMessage] = []
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
            ordered.append(_tool_result(message, role, position))
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
            text = _unicode(_text(content, position), position, f"the {role} message's text")
        if not calls and not text.strip():
            continue  # nothing to send; the record stays where it is kept
        if role == "system" or role == "developer":
            ordered.append(SystemMessage(role, text, position, name))
        else:
            ordered.append(
                ChatMessage(role, text, position, tool_calls=calls, name=name, null_content=content is None)
            )
    given, ordered = ordered, _answered(ordered)
    if not ordered:
        raise ConfigurationError(
            "messages has nothing to send: "
            + (_unpaired(given[0]) if given else "every message is empty")
            + " (a model call needs at least one message with text or tool calls)"
        )
    turns = tuple(message for message in ordered if isinstance(message, ChatMessage))
    system = [message.text for message in ordered if isinstance(message, SystemMessage)]
    return Conversation(tuple(ordered), turns, "\n\n".join(system) if system else None)
