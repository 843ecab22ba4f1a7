"""Histories an API would reject, sent so that it accepts them: every tool call sent is answered by
its results right after it, no result is sent without its call, a structured answer is replayed as
the assistant's JSON text, and the session record keeps everything as it was.

Each history goes through every provider's real SDK to the loopback server and is read back into one
provider-neutral transcript (see test_request_messages).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from lionflow import (
    ActionRequestContent,
    ActionResponseContent,
    AssistantResponseContent,
    InstructionContent,
    Message,
    Session,
    ToolCall,
    iModel,
)
from lionflow.operations import communicate
from tests.loopback import LoopbackServer, Reply
from tests.providers import test_anthropic_messages as anthropic_case
from tests.providers.helpers import Entry, ProviderCase, chat_transcript
from tests.providers.test_common_behaviour import CASES, every_provider
from tests.providers.test_request_messages import sent

pytestmark = pytest.mark.anyio

Q = {"role": "user", "content": "q"}
CALL_C1 = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "name": "w", "arguments": "{}"}]}
RESULT_C1 = {"role": "tool", "tool_call_id": "c1", "content": "r"}
PARIS = {"city": "Paris", "days": 3}

HISTORIES: dict[str, tuple[list[Any], list[Entry]]] = {
    # lionflow's own parallel form: one message per call, then one per result
    "parallel calls as separate messages": (
        [
            Message(content=InstructionContent(instruction="q")),
            Message(content=ActionRequestContent(function="w", arguments={"c": 1}, call_id="a")),
            Message(content=ActionRequestContent(function="w", arguments={"c": 2}, call_id="b")),
            Message(content=ActionResponseContent(call_id="a", function="w", output="1")),
            Message(content=ActionResponseContent(call_id="b", function="w", output="2")),
        ],
        [
            ("user", "q"),
            ("call", "a", "w", {"c": 1}),
            ("call", "b", "w", {"c": 2}),
            ("result", "a", "1"),
            ("result", "b", "2"),
        ],
    ),
    # a complete turn whose tool call was never run: the call is not sent, the turn's text is
    "a call no result answers": (
        [
            Message(content=InstructionContent(instruction="q")),
            Message(
                content=AssistantResponseContent(
                    assistant_response="Let me look.",
                    tool_calls=[ToolCall(id="c1", name="w", arguments={"x": 1})],
                    finish_reason="tool_calls",
                )
            ),
            Message(content=InstructionContent(instruction="never mind")),
        ],
        [("user", "q"), ("assistant", "Let me look."), ("user", "never mind")],
    ),
    "one of two calls answered": (
        [
            Q,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "name": "w", "arguments": "{}"},
                    {"id": "c2", "name": "v", "arguments": "{}"},
                ],
            },
            RESULT_C1,
            {"role": "user", "content": "go on"},
        ],
        [("user", "q"), ("call", "c1", "w", {}), ("result", "c1", "r"), ("user", "go on")],
    ),
    "a result whose call is missing": (
        [
            Q,
            {"role": "tool", "tool_call_id": "zz", "content": "r", "name": "w"},
            {"role": "user", "content": "x"},
        ],
        [("user", "q"), ("user", "x")],
    ),
    # results come right after their call, before any text the user added in between
    "user text between a call and its result": (
        [Q, CALL_C1, {"role": "user", "content": "hurry"}, RESULT_C1],
        [("user", "q"), ("call", "c1", "w", {}), ("result", "c1", "r"), ("user", "hurry")],
    ),
    "a system message between a call and its result": (
        [Q, CALL_C1, {"role": "system", "content": "be brief"}, RESULT_C1],
        [("system", "be brief"), ("user", "q"), ("call", "c1", "w", {}), ("result", "c1", "r")],
    ),
    "a tool_call_id of 0 answers the call with id 0": (
        [
            Q,
            {"role": "assistant", "content": None, "tool_calls": [{"id": 0, "name": "w", "arguments": "{}"}]},
            {"role": "tool", "tool_call_id": 0, "content": "r"},
        ],
        [("user", "q"), ("call", "0", "w", {}), ("result", "0", "r")],
    ),
    # a structured answer (Anthropic's forced answer tool) is the assistant's JSON, not an open call
    "a structured answer, then a plain turn": (
        [
            Message(content=InstructionContent(instruction="Plan a trip")),
            Message(
                content=AssistantResponseContent(
                    tool_calls=[
                        ToolCall(id="toolu_answer", name="Trip", arguments={"city": "Paris", "days": 3})
                    ],
                    finish_reason="stop",
                    structured=PARIS,
                )
            ),
            Message(content=InstructionContent(instruction="Thanks, now say hi")),
        ],
        [
            ("user", "Plan a trip"),
            ("assistant", json.dumps({"city": "Paris", "days": 3})),
            ("user", "Thanks, now say hi"),
        ],
    ),
}


@every_provider
@pytest.mark.parametrize("history", list(HISTORIES))
async def test_every_call_sent_is_answered_right_after_it(
    case: ProviderCase, history: str, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    messages, expected = HISTORIES[history]

    body = await sent(case, server, make(), messages)

    assert case.transcript(body) == expected


CHAT_ROLES: dict[str, list[str]] = {
    "parallel calls as separate messages": ["user", "assistant", "tool", "tool"],
    "a system message between a call and its result": ["user", "assistant", "tool", "system"],
}


CHAT_CASES = [case for case in CASES if case.transcript is chat_transcript]


@pytest.mark.parametrize("case", CHAT_CASES, ids=[case.id for case in CHAT_CASES])
@pytest.mark.parametrize("history", list(CHAT_ROLES))
async def test_chat_tool_messages_follow_the_one_assistant_message_that_made_the_calls(
    case: ProviderCase, history: str, server: LoopbackServer
) -> None:
    # Chat Completions rejects a tool message that does not follow the assistant message with its call.
    model = case.loopback_model(server)
    try:
        body = await sent(case, server, model, HISTORIES[history][0])
    finally:
        await model.aclose()

    assert [message["role"] for message in body["messages"]] == CHAT_ROLES[history]


async def test_anthropic_tool_results_come_first_in_their_user_message(
    server: LoopbackServer,
) -> None:
    model = anthropic_case.CASE.loopback_model(server)
    try:
        messages, _ = HISTORIES["user text between a call and its result"]
        body = await sent(anthropic_case.CASE, server, model, messages)
    finally:
        await model.aclose()

    last = body["messages"][-1]
    assert [block["type"] for block in last["content"]] == ["tool_result", "text"]


async def test_anthropic_final_assistant_text_is_sent_without_trailing_whitespace(
    server: LoopbackServer,
) -> None:
    # The Messages API rejects a final assistant message (a prefill) that ends in whitespace.
    model = anthropic_case.CASE.loopback_model(server)
    try:
        body = await sent(
            anthropic_case.CASE, server, model, [Q, {"role": "assistant", "content": "Sure:\n"}]
        )
    finally:
        await model.aclose()

    assert body["messages"][-1] == {"role": "assistant", "content": [{"type": "text", "text": "Sure:"}]}


class Trip(BaseModel):
    city: str
    days: int


async def test_a_structured_turn_on_anthropic_leaves_the_branch_usable(server: LoopbackServer) -> None:
    # The forced answer tool's call is stored; the next turn must not send it as an unanswered tool_use.
    model = anthropic_case.CASE.loopback_model(server)
    session = Session()
    session.services.register(model)
    branch = session.create_branch(name="chat")
    server.add(Reply(pieces=anthropic_case.answer_body("Trip", '{"city": "Paris", "days": 3}')))
    server.add(Reply(pieces=anthropic_case.body(anthropic_case.text_block(0, "hi"))))
    try:
        trip = await communicate(session, branch, instruction="Plan a trip", response_format=Trip)
        await communicate(session, branch, instruction="Thanks, now say hi")
    finally:
        await model.aclose()

    assert trip == Trip(city="Paris", days=3)
    stored = branch.messages[1].content
    assert isinstance(stored, AssistantResponseContent)
    assert stored.tool_calls  # the record keeps the answer tool's call
    assert anthropic_case.CASE.transcript(server.requests[1].json) == [
        ("user", "Plan a trip"),
        ("assistant", json.dumps({"city": "Paris", "days": 3})),
        ("user", "Thanks, now say hi"),
    ]
