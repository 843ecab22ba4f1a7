"""Input no API could take fails the same way on every provider: a `ConfigurationError` saying what
is wrong, before any request, never a raw ValueError, TypeError or UnicodeEncodeError, and never a
request that silently means something else (Gemini read ``tool_choice=""`` as "call any tool").
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest

from lionflow import (
    ActionRequestContent,
    ActionResponseContent,
    ConfigurationError,
    InstructionContent,
    Message,
    iModel,
)
from lionflow.errors import ProviderHTTPError
from tests.loopback import LoopbackServer, Reply
from tests.providers.helpers import ProviderCase
from tests.providers.test_common_behaviour import every_provider

pytestmark = pytest.mark.anyio

Q = {"role": "user", "content": "q"}
HI = [{"role": "user", "content": "hi"}]
W = {"name": "w", "parameters": {"type": "object", "properties": {}}}
DAY = datetime.date(2024, 1, 1)


def _call(arguments: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "name": "w", "arguments": arguments}],
    }


RESULT = {"role": "tool", "tool_call_id": "c1", "content": "r"}

BAD_PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "stop=5": ({"stop": 5}, "stop"),
    "stop=[5]": ({"stop": ["END", 5]}, "stop"),
    "tools='nope'": ({"tools": "nope"}, "tools must be a list"),
    "tools={...}": ({"tools": {"name": "weather"}}, "tools must be a list"),
    "tools=[42]": ({"tools": [42]}, "a tool must be"),
    "parameters a string": ({"tools": [{"name": "w", "parameters": "notadict"}]}, "'parameters' must be"),
    "parameters a number": ({"tools": [{"name": "w", "parameters": 5}]}, "'parameters' must be"),
    "nested parameters a list": (
        {"tools": [{"type": "function", "function": {"name": "w", "parameters": [1]}}]},
        "'parameters' must be",
    ),
    "a tool name not a string": ({"tools": [{"name": 5}]}, "a tool needs a 'name'"),
    "two tools of one name": ({"tools": [W, W]}, "more than one tool named 'w'"),
    "tool_choice empty": ({"tools": [W], "tool_choice": ""}, "tool_choice '' is not understood"),
    "tool_choice not a tool": ({"tools": [W], "tool_choice": "nosuchtool"}, "not among the tools"),
    "tool_choice name a number": (
        {"tools": [W], "tool_choice": {"type": "function", "function": {"name": 5}}},
        "is not understood",
    ),
    "tool_choice required without tools": ({"tool_choice": "required"}, "needs tools="),
    "tool_choice a tool without tools": ({"tool_choice": "w"}, "needs tools="),
    "stop an empty sequence": ({"stop": ["END", ""]}, "must not be empty"),
}

BAD_MESSAGES: dict[str, tuple[list[Any], str]] = {
    "content None": ([{"role": "user", "content": None}], r"messages\[0\].*needs 'content'"),
    "no content": ([{"role": "user"}], r"messages\[0\].*needs 'content'"),
    "content a number": ([{"role": "user", "content": 42}], "a string or a list of text parts"),
    "an image part": (
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        "image_url",
    ),
    "unknown role": ([{"role": "critic", "content": "x"}], "role 'critic'.*use system, developer"),
    "a nameless tool call": (
        [*HI, {"role": "assistant", "tool_calls": [{"id": "c", "arguments": "{}"}]}],
        r"messages\[1\].*'name'",
    ),
    "tool_calls not a list": (
        [*HI, {"role": "assistant", "content": "x", "tool_calls": "weather"}],
        "'tool_calls' must be a list",
    ),
    "a tool result without its call": (
        [*HI, {"role": "tool", "content": "18 degrees"}],
        r"messages\[1\].*tool_call_id",
    ),
    "a tool result without content": (
        [*HI, {"role": "tool", "tool_call_id": "c", "content": None}],
        r"messages\[1\].*needs 'content'",
    ),
    "only empty messages": ([{"role": "user", "content": ""}], "nothing to send"),
    "arguments holding a date": ([Q, _call({"d": DAY}), RESULT], r"messages\[1\].*arguments.*JSON"),
    "arguments holding NaN": ([Q, _call({"x": float("nan")}), RESULT], r"messages\[1\].*arguments.*NaN"),
    "lionflow call arguments holding a date": (
        [
            Message(content=InstructionContent(instruction="q")),
            Message(content=ActionRequestContent(function="w", arguments={"d": DAY}, call_id="c1")),
            Message(content=ActionResponseContent(call_id="c1", function="w", output="r")),
        ],
        r"messages\[1\].*arguments.*JSON",
    ),
    "a result object holding a date": (
        [Q, _call("{}"), {"role": "tool", "tool_call_id": "c1", "content": {"d": DAY}}],
        r"messages\[2\].*result.*JSON",
    ),
    "a lone surrogate in text": ([{"role": "user", "content": "bad \ud800"}], r"messages\[0\].*Unicode"),
    "a lone surrogate in a result": (
        [Q, _call("{}"), {"role": "tool", "tool_call_id": "c1", "content": "\udc80"}],
        r"messages\[2\].*Unicode",
    ),
    "an empty call id": (
        [
            Q,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "", "name": "w", "arguments": "{}"}],
            },
            RESULT,
        ],
        r"messages\[1\].*'id' must not be empty",
    ),
}


@every_provider
@pytest.mark.parametrize("bad", list(BAD_PARAMS))
async def test_bad_tools_tool_choice_and_stop_raise_before_any_request(
    case: ProviderCase, bad: str, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    params, complaint = BAD_PARAMS[bad]
    if "stop" in params and not case.takes_stop:
        complaint = "stop"  # the Responses API takes no stop at all: any stop= is refused

    with pytest.raises(ConfigurationError, match=complaint):
        await make().invoke([Q], **params)

    assert server.requests == []


@every_provider
@pytest.mark.parametrize("bad", list(BAD_MESSAGES))
async def test_messages_with_no_json_or_unicode_form_raise_before_any_request(
    case: ProviderCase, bad: str, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    messages, complaint = BAD_MESSAGES[bad]

    with pytest.raises(ConfigurationError, match=complaint):
        await make().invoke(messages)

    assert server.requests == []


@every_provider
@pytest.mark.parametrize("choice", ["auto", "none"])
async def test_tool_choice_auto_or_none_without_tools_is_not_sent(
    case: ProviderCase, choice: str, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    # Without tools these say nothing, and some APIs reject a tool_choice given without tools.
    server.add(Reply.json(400, case.error_body(400, "recorded")))
    with pytest.raises(ProviderHTTPError):
        await make().invoke([Q], tool_choice=choice)

    (request,) = server.requests
    assert "tool_choice" not in request.json
    assert "toolConfig" not in request.json


async def test_anthropic_refuses_a_stop_sequence_of_only_whitespace(server: LoopbackServer) -> None:
    from tests.providers.test_anthropic_messages import CASE

    model = CASE.loopback_model(server)
    try:
        with pytest.raises(ConfigurationError, match="only whitespace"):
            await model.invoke([Q], stop=["  "])
    finally:
        await model.aclose()

    assert server.requests == []
