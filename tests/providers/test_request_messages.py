"""One conversation, every endpoint: the same histories go through each provider's real SDK to the
loopback server, and what arrived is read back into one provider-neutral transcript.

Tool calls in the flat or the nested form, tool results as text, parts or objects, system prompts and
lionflow's own `Message`s must reach every API with their ids, names and arguments intact; an empty
assistant turn (a failed or refused one, kept in the session) must never reach an API as an empty
content block; and malformed input must fail with `ConfigurationError` before any request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from lionflow import (
    ActionResponseContent,
    AssistantResponseContent,
    ConfigurationError,
    InstructionContent,
    Message,
    ProviderHTTPError,
    SystemContent,
    ToolCall,
    iModel,
)
from lionflow.services.providers.base import ModelRequest
from tests.loopback import LoopbackServer, Reply
from tests.providers.helpers import Entry, ProviderCase
from tests.providers.test_common_behaviour import every_provider

pytestmark = pytest.mark.anyio


async def sent(case: ProviderCase, server: LoopbackServer, model: iModel, messages: Any) -> dict[str, Any]:
    """The JSON body `model`'s SDK sent for `messages`. The server answers 400, so that only the
    request is under test here, not the reading of a stream."""
    server.add(Reply.json(400, case.error_body(400, "recorded")))
    with pytest.raises(ProviderHTTPError):
        await model.invoke(messages)
    (received,) = server.requests
    body: dict[str, Any] = received.json
    return body


# -- the same histories on every endpoint ------------------------------------------------------------

WEATHER = {"city": "Paris"}
RESULT = {"temp": 18, "sky": "clear"}

NESTED_CALLS: dict[str, Any] = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "weather", "arguments": json.dumps(WEATHER)},
        },
        {"id": "call_b", "type": "function", "function": {"name": "clock", "arguments": {"tz": "CET"}}},
    ],
}
FLAT_CALLS: dict[str, Any] = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {"id": "call_a", "name": "weather", "arguments": json.dumps(WEATHER)},
        {"id": "call_b", "name": "clock", "arguments": {"tz": "CET"}},
    ],
}
CALLS_SENT: list[Entry] = [("call", "call_a", "weather", WEATHER), ("call", "call_b", "clock", {"tz": "CET"})]
RESULTS: list[dict[str, Any]] = [
    {"role": "tool", "tool_call_id": "call_a", "content": "18 degrees"},
    {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "14:00"}]},
]
RESULTS_SENT: list[Entry] = [("result", "call_a", "18 degrees"), ("result", "call_b", "14:00")]
QUESTION = {"role": "user", "content": "Weather and time in Paris?"}
THANKS = {"role": "user", "content": "Thanks."}

HISTORIES: dict[str, tuple[list[Any], list[Entry]]] = {
    "plain": (
        [
            {"role": "user", "content": [{"type": "text", "text": "Hello "}, "there."]},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "Bye."},
        ],
        [("user", "Hello there."), ("assistant", "Hi."), ("user", "Bye.")],
    ),
    "system": (
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": "Hi."},
        ],
        [("system", "Be brief.\n\nUse metric units."), ("user", "Hi.")],
    ),
    "nested tool calls": (
        [QUESTION, NESTED_CALLS, *RESULTS, THANKS],
        [("user", QUESTION["content"]), *CALLS_SENT, *RESULTS_SENT, ("user", "Thanks.")],
    ),
    "flat tool calls": (
        [QUESTION, FLAT_CALLS, *RESULTS, THANKS],
        [("user", QUESTION["content"]), *CALLS_SENT, *RESULTS_SENT, ("user", "Thanks.")],
    ),
    "text beside tool calls, an object result": (
        [
            QUESTION,
            {"role": "assistant", "content": "Checking.", "tool_calls": FLAT_CALLS["tool_calls"][:1]},
            {"role": "tool", "tool_call_id": "call_a", "content": RESULT},
        ],
        [
            ("user", QUESTION["content"]),
            ("assistant", "Checking."),
            CALLS_SENT[0],
            ("result", "call_a", json.dumps(RESULT)),
        ],
    ),
    "lionflow messages": (
        [
            Message(content=SystemContent(system="Be brief.")),
            Message(content=InstructionContent(instruction="Weather in Paris?")),
            Message(
                content=AssistantResponseContent(
                    tool_calls=[ToolCall(id="call_a", name="weather", arguments=WEATHER)]
                )
            ),
            Message(content=ActionResponseContent(call_id="call_a", function="weather", output="18 degrees")),
        ],
        [("system", "Be brief."), ("user", "Weather in Paris?"), CALLS_SENT[0], RESULTS_SENT[0]],
    ),
}


@every_provider
@pytest.mark.parametrize("history", list(HISTORIES))
async def test_every_endpoint_renders_the_same_history(
    case: ProviderCase, history: str, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    messages, expected = HISTORIES[history]

    body = await sent(case, server, make(), messages)

    assert case.transcript(body) == expected


# -- empty turns -----------------------------------------------------------------------------------


def _empty_parts(value: Any) -> list[Any]:
    """Every text block, part or message content in a request body that is empty or blank."""
    found: list[Any] = []
    if isinstance(value, dict):
        for key, item in value.items():
            blank = (isinstance(item, list) and not item) or (isinstance(item, str) and not item.strip())
            if key in ("text", "content") and blank:
                found.append(value)
            else:
                found += _empty_parts(item)
    elif isinstance(value, list):
        for item in value:
            found += _empty_parts(item)
    return found


EMPTY_TURNS: list[Any] = [
    {"role": "system", "content": ""},
    Message(content=InstructionContent(instruction="First question?")),
    Message(content=AssistantResponseContent(incomplete=True)),  # failed before its first chunk
    Message(content=InstructionContent(instruction="Second question?")),
    Message(content=AssistantResponseContent(finish_reason="refusal")),  # an empty refusal
    {"role": "assistant", "content": [{"type": "text", "text": " "}]},
    {"role": "user", "content": "Third question?"},
]


@every_provider
async def test_an_empty_assistant_turn_sends_no_empty_block(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    body = await sent(case, server, make(), EMPTY_TURNS)

    assert _empty_parts(body) == []
    assert case.transcript(body) == [
        ("user", "First question?"),
        ("user", "Second question?"),
        ("user", "Third question?"),
    ]


# -- malformed input fails before any request ------------------------------------------------------


@every_provider
@pytest.mark.parametrize("message", [42, None, "hi", ["user", "hi"]], ids=repr)
async def test_a_request_whose_message_is_not_a_dict_is_refused_by_the_adapter(
    case: ProviderCase, message: Any, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    # A ModelRequest built by hand skips iModel's checks; the adapter must still refuse it.
    model = make()
    request = ModelRequest(model=model.model, messages=[message])

    with pytest.raises(ConfigurationError, match=r"messages\[0\] is a .*expected a chat dict"):
        await model.adapter.open(request)

    assert server.requests == []


CUT_OFF_CALL: list[Any] = [
    Message(content=InstructionContent(instruction="Weather in Paris?")),
    # the stream broke while the tool call's arguments were arriving: never executed, never answered
    Message(
        content=AssistantResponseContent(
            assistant_response="Let me check.",
            tool_calls=[ToolCall(id="call_1", name="weather", raw_arguments='{"city": "Par')],
            incomplete=True,
            finish_reason="error",
        )
    ),
    {"role": "user", "content": "Never mind. Say hi."},
]


@every_provider
async def test_an_interrupted_tool_call_stays_in_the_record_but_is_not_sent(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    # A tool call no tool result answers is rejected by every API, and its arguments are cut off:
    # the interrupted turn goes out as the text that had arrived.
    body = await sent(case, server, make(), CUT_OFF_CALL)

    assert case.transcript(body) == [
        ("user", "Weather in Paris?"),
        ("assistant", "Let me check."),
        ("user", "Never mind. Say hi."),
    ]
