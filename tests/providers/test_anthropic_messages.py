"""The Anthropic Messages adapter, through the real `anthropic` SDK against a loopback HTTP server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import RawContentBlockDeltaEvent
from pydantic import BaseModel

from lionflow import ConfigurationError, StreamInterrupted, Usage, iModel
from lionflow.services.providers.anthropic_messages_request import DEFAULT_MAX_TOKENS
from tests.loopback import LoopbackServer, Reply, anthropic_sse, split
from tests.providers.helpers import HI, Entry, ProviderCase, SdkErrors, run
from tests.providers.structured import (
    POINT_SCHEMA,
    STOPS_JSON,
    TRIP,
    TRIP_JSON,
    Trip,
    assert_growing,
    items_as_they_close,
    pieces,
    streamed_partials,
)

pytestmark = pytest.mark.anyio

MODEL = "claude-sonnet-4-6"


# -- wire bodies -----------------------------------------------------------------------------------


def message_start(input_tokens: int = 10, **usage: Any) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_01abc",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-6-20260101",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage},
        },
    }


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **payload: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": payload}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def text_block(index: int, *pieces: str) -> list[dict[str, Any]]:
    return [
        block_start(index, {"type": "text", "text": ""}),
        *(delta(index, type="text_delta", text=piece) for piece in pieces),
        block_stop(index),
    ]


def tool_block(index: int, call_id: str, name: str, *fragments: str) -> list[dict[str, Any]]:
    return [
        block_start(index, {"type": "tool_use", "id": call_id, "name": name, "input": {}}),
        *(delta(index, type="input_json_delta", partial_json=fragment) for fragment in fragments),
        block_stop(index),
    ]


def ending(stop_reason: str = "end_turn", output_tokens: int = 5, **extra: Any) -> list[dict[str, Any]]:
    stop_sequence = extra.pop("stop_sequence", None)
    stop_details = extra.pop("stop_details", None)
    message_delta: dict[str, Any] = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
    if stop_details is not None:
        message_delta["stop_details"] = stop_details
    return [
        {"type": "message_delta", "delta": message_delta, "usage": {"output_tokens": output_tokens, **extra}},
        {"type": "message_stop"},
    ]


def body(*blocks: list[dict[str, Any]], start: dict[str, Any] | None = None, **end: Any) -> list[bytes]:
    events = [start or message_start()]
    for block in blocks:
        events += block
    return anthropic_sse(events + ending(**end))


def cut_body(*pieces: str) -> list[bytes]:
    """A text block's deltas, then nothing: no block stop, no message_delta with the stop_reason."""
    return anthropic_sse([message_start(), *text_block(0, *pieces)[:-1]])


def error_body(status: int, message: str) -> dict[str, Any]:
    """The body of an HTTP error response."""
    kinds = {401: "authentication_error", 429: "rate_limit_error", 529: "overloaded_error"}
    kind = kinds.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _transcript(body: dict[str, Any]) -> list[Entry]:
    entries: list[Entry] = [("system", body["system"])] if "system" in body else []
    for message in body["messages"]:
        for block in message["content"]:
            if block["type"] == "text":
                entries.append((message["role"], block["text"]))
            elif block["type"] == "tool_use":
                entries.append(("call", block["id"], block["name"], block["input"]))
            else:
                entries.append(("result", block["tool_use_id"], block.get("content", "")))
    return entries


CASE = ProviderCase(
    id="anthropic",
    provider="anthropic",
    model=MODEL,
    endpoint_name="messages",
    key_variables=("ANTHROPIC_API_KEY",),
    base_url_variable="ANTHROPIC_BASE_URL",
    text_body=lambda *pieces: body(text_block(0, *pieces)),
    cut_body=cut_body,
    cut_message="stop_reason",
    error_body=error_body,
    transcript=_transcript,
    errors=SdkErrors(
        authentication=anthropic.AuthenticationError,
        rate_limit=anthropic.RateLimitError,
        server=anthropic.InternalServerError,
        connection=anthropic.APIConnectionError,
        dropped=httpx2.TransportError,  # the SDK lets httpx2's errors through mid-stream
    ),
)


# -- streaming -------------------------------------------------------------------------------------


async def test_text_streams_as_deltas_with_one_usage_and_one_finish_last(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    events = [message_start(), *text_block(0, "Hel", "", "lo"), {"type": "ping"}, *ending(output_tokens=3)]
    server.add(Reply(pieces=anthropic_sse(events)))
    chunks, response = await run(make())

    assert [(c.type, c.data, c.index) for c in chunks] == [
        ("text", "Hel", 0),
        ("text", "lo", 0),
        ("usage", "", 0),
        ("finish", "", 0),
    ]
    assert response.text == "Hello"
    assert response.finish_reason == "stop"
    assert chunks[-1].metadata["stop_reason"] == "end_turn"
    assert response.usage == Usage(input_tokens=10, output_tokens=3, total_tokens=13)
    assert chunks[0].metadata == {
        "provider": "anthropic",
        "model": "claude-sonnet-4-6-20260101",
        "response_id": "msg_01abc",
    }
    assert isinstance(chunks[0].raw_response, RawContentBlockDeltaEvent)
    received = server.requests[0]
    assert received.path == "/v1/messages"
    # this SDK sends the API key as a bearer token
    assert received.headers["authorization"] == "Bearer test"
    assert received.json["stream"] is True
    assert received.json["model"] == MODEL
    assert received.json["max_tokens"] == DEFAULT_MAX_TOKENS == 4096


async def test_thinking_streams_as_reasoning_and_signatures_make_no_chunk(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    thinking = [
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, type="thinking_delta", thinking="Let me "),
        delta(0, type="thinking_delta", thinking="think."),
        delta(0, type="signature_delta", signature="EqQBCkYIBxgCKkA="),
        block_stop(0),
    ]
    redacted = [block_start(1, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}), block_stop(1)]
    server.add(Reply(pieces=body(thinking, redacted, text_block(2, "Answer."))))
    chunks, response = await run(make(thinking={"type": "enabled", "budget_tokens": 1024}))

    assert [(c.type, c.data, c.index) for c in chunks if c.is_content] == [
        ("reasoning", "Let me ", 0),
        ("reasoning", "think.", 0),
        ("text", "Answer.", 2),
    ]
    assert response.reasoning == "Let me think."
    assert response.text == "Answer."
    assert server.requests[0].json["thinking"] == {"type": "enabled", "budget_tokens": 1024}


async def test_parallel_tool_calls_carry_id_and_name_on_every_fragment(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(
        Reply(
            pieces=body(
                text_block(0, "Checking both."),
                tool_block(1, "toolu_A", "get_weather", "", '{"city": ', '"Paris"}'),
                tool_block(2, "toolu_B", "get_time", '{"tz": "Europe', '/Berlin"}'),
                stop_reason="tool_use",
            )
        )
    )
    chunks, response = await run(make())

    tool_chunks = [c for c in chunks if c.type == "tool_call"]
    assert [(c.index, c.tool_call_id, c.tool_name, c.data) for c in tool_chunks] == [
        (1, "toolu_A", "get_weather", '{"city": '),
        (1, "toolu_A", "get_weather", '"Paris"}'),
        (2, "toolu_B", "get_time", '{"tz": "Europe'),
        (2, "toolu_B", "get_time", '/Berlin"}'),
    ]
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("toolu_A", "get_weather", {"city": "Paris"}),
        ("toolu_B", "get_time", {"tz": "Europe/Berlin"}),
    ]
    assert response.text == "Checking both."
    assert response.finish_reason == "tool_calls"
    assert chunks[-1].metadata["stop_reason"] == "tool_use"


async def test_a_tool_call_without_arguments_is_not_lost(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=body(tool_block(0, "toolu_N", "list_files"), stop_reason="tool_use")))
    chunks, response = await run(make())

    assert [(c.type, c.data, c.tool_call_id, c.tool_name) for c in chunks if c.is_content] == [
        ("tool_call", "{}", "toolu_N", "list_files")
    ]
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [("toolu_N", "list_files", {})]


@pytest.mark.parametrize(
    ("start_usage", "delta_usage", "expected", "cache_creation"),
    [
        pytest.param(
            {"cache_read_input_tokens": 200, "cache_creation_input_tokens": 50},
            {},
            # the whole prompt: 10 uncached + 200 read from the cache + 50 written to it
            Usage(input_tokens=260, output_tokens=7, total_tokens=267, cached_tokens=200),
            50,
            id="prompt-cache",
        ),
        pytest.param(
            {"cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
            {
                "input_tokens": 12,
                "cache_read_input_tokens": 30,
                "output_tokens_details": {"thinking_tokens": 4},
            },
            # input: 12 uncached + 30 read from the prompt cache
            Usage(input_tokens=42, output_tokens=7, total_tokens=49, reasoning_tokens=4, cached_tokens=30),
            None,
            id="cumulative-message-delta",
        ),
    ],
)
async def test_usage_combines_message_start_and_message_delta(
    server: LoopbackServer,
    make: Callable[..., iModel],
    start_usage: dict[str, Any],
    delta_usage: dict[str, Any],
    expected: Usage,
    cache_creation: int | None,
) -> None:
    server.add(
        Reply(
            pieces=body(
                text_block(0, "ok"), start=message_start(10, **start_usage), output_tokens=7, **delta_usage
            )
        )
    )
    chunks, response = await run(make())

    usage_chunks = [c for c in chunks if c.type == "usage"]
    assert len(usage_chunks) == 1
    assert chunks[-2] is usage_chunks[0]
    assert response.usage == expected
    assert usage_chunks[0].metadata.get("cache_creation_input_tokens") == cache_creation


async def test_refusal_ends_with_finish_reason_refusal_and_keeps_the_text(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    details = {"type": "refusal", "category": "cyber", "explanation": "Refused due to policy."}
    server.add(Reply(pieces=body(text_block(0, "I can"), stop_reason="refusal", stop_details=details)))
    chunks, response = await run(make())

    assert response.finish_reason == "refusal"
    assert response.text == "I can"
    assert chunks[-1].metadata["stop_reason"] == "refusal"
    assert chunks[-1].metadata["stop_details"] == details
    assert response.metadata["stop_details"]["category"] == "cyber"


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "refusal"),
    ],
)
async def test_stop_reasons_are_normalized_with_the_native_value_kept(
    server: LoopbackServer, make: Callable[..., iModel], stop_reason: str, finish_reason: str
) -> None:
    extra: dict[str, Any] = {"stop_sequence": "###"} if stop_reason == "stop_sequence" else {}
    server.add(Reply(pieces=body(text_block(0, "x"), stop_reason=stop_reason, **extra)))
    chunks, response = await run(make())

    assert [c.type for c in chunks].count("finish") == 1
    assert chunks[-1].type == "finish"
    assert response.finish_reason == finish_reason
    assert chunks[-1].metadata["stop_reason"] == stop_reason
    assert chunks[-1].metadata.get("stop_sequence") == extra.get("stop_sequence")


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_type", "retryable"),
    [("overloaded_error", True), ("api_error", True), ("invalid_request_error", False)],
)
async def test_error_event_mid_stream_raises_stream_interrupted_with_the_partial_response(
    server: LoopbackServer, make: Callable[..., iModel], error_type: str, retryable: bool
) -> None:
    events = [message_start(), block_start(0, {"type": "text", "text": ""})]
    events += [delta(0, type="text_delta", text="Partial "), delta(0, type="text_delta", text="answer")]
    events.append({"type": "error", "error": {"type": error_type, "message": "something broke"}})
    server.add(Reply(pieces=anthropic_sse(events)))
    model = make()
    seen: list[str] = []

    with pytest.raises(StreamInterrupted) as caught:
        async for chunk in model.invoke(messages=HI):
            seen.append(chunk.data)

    error = caught.value
    assert seen == ["Partial ", "answer"]
    assert error.retryable is retryable
    assert error_type in error.message
    assert isinstance(error.__cause__, anthropic.APIStatusError)
    assert error.response is not None
    assert error.response.text == "Partial answer"
    assert error.response.incomplete
    assert error.response.finish_reason == "error"


# -- what the provider receives --------------------------------------------------------------------


async def test_messages_are_converted_to_anthropic_turns(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=body(text_block(0, "done"))))
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "clock", "arguments": {"tz": "CET"}},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "14:00"}]},
        {"role": "user", "content": "Thanks."},
        {"role": "assistant", "content": "You're welcome."},
        {"role": "user", "content": "One more"},
        {"role": "user", "content": "question."},
    ]
    await run(make(), messages)

    sent = server.requests[0].json
    assert sent["system"] == "Be brief.\n\nUse metric units."
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather and time in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "clock", "input": {"tz": "CET"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "14:00"},
                {"type": "text", "text": "Thanks."},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "You're welcome."}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "One more"}, {"type": "text", "text": "question."}],
        },
    ]


class Lookup(BaseModel):
    """Look a word up in the dictionary."""

    word: str


async def test_parameters_are_mapped_to_anthropic_names(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=body(text_block(0, "ok"))))
    weather = {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    web_search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    model = make(temperature=0.3, top_p=0.9, max_tokens=321, stop="###")
    await run(
        model,
        tools=[weather, Lookup, web_search],
        tool_choice="required",
        top_k=5,
        metadata={"user_id": "u-1"},
    )

    sent = server.requests[0].json
    assert sent["temperature"] == 0.3
    assert sent["top_p"] == 0.9
    assert sent["max_tokens"] == 321
    assert sent["stop_sequences"] == ["###"]
    assert sent["tools"] == [
        {
            "name": "weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {
            "name": "Lookup",
            "description": "Look a word up in the dictionary.",
            "input_schema": Lookup.model_json_schema(),
        },
        web_search,
    ]
    assert sent["tool_choice"] == {"type": "any"}
    assert sent["top_k"] == 5  # an unknown keyword passes through
    assert sent["metadata"] == {"user_id": "u-1"}
    assert "stop" not in sent
    assert "seed" not in sent


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("any", {"type": "any"}),
        ("weather", {"type": "tool", "name": "weather"}),
        ({"type": "function", "function": {"name": "weather"}}, {"type": "tool", "name": "weather"}),
    ],
)
async def test_tool_choice_forms(
    server: LoopbackServer, make: Callable[..., iModel], choice: Any, wire: dict[str, Any]
) -> None:
    server.add(Reply(pieces=body(text_block(0, "ok"))))
    await run(make(), tools=[{"name": "weather", "parameters": {}}], tool_choice=choice, stop=["a", "b"])

    assert server.requests[0].json["tool_choice"] == wire
    assert server.requests[0].json["stop_sequences"] == ["a", "b"]


async def test_seed_is_refused_before_any_request(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    model = make(seed=42)
    with pytest.raises(ConfigurationError, match="seed"):
        await model.invoke(messages=HI)

    assert server.requests == []


async def test_default_headers_option_reaches_the_server(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=body(text_block(0, "ok"))))
    await run(make(default_headers={"anthropic-beta": "fancy-2026"}))

    assert server.requests[0].headers["anthropic-beta"] == "fancy-2026"
    assert "default_headers" not in server.requests[0].json


# -- structured output -----------------------------------------------------------------------------


def answer_body(name: str = "Trip", *fragments: str) -> list[bytes]:
    """The reply to a forced answer tool: its input in fragments, then stop_reason tool_use."""
    return body(
        tool_block(0, "toolu_answer", name, *(fragments or pieces(TRIP_JSON))), stop_reason="tool_use"
    )


async def test_a_model_class_is_asked_for_with_one_forced_tool(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=answer_body()))
    await run(make(), response_format=Trip)

    sent = server.requests[0].json
    assert sent["tools"] == [
        {
            "name": "Trip",
            "description": "Give your answer as the input of this tool.",
            "input_schema": Trip.model_json_schema(),
        }
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "Trip"}
    assert "response_format" not in sent
    assert "output_config" not in sent


async def test_a_json_schema_dict_names_its_tool_after_its_title(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=answer_body("Point", '{"x": 1,', ' "y": 2}')))
    _, response = await run(make(), response_format=POINT_SCHEMA)

    sent = server.requests[0].json
    assert sent["tools"][0]["name"] == "Point"
    assert sent["tools"][0]["input_schema"] == POINT_SCHEMA
    assert sent["tool_choice"] == {"type": "tool", "name": "Point"}
    assert response.tool_calls[0].arguments == {"x": 1, "y": 2}


async def test_the_forced_tool_input_streams_into_parsed_and_finishes_as_stop(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=split(answer_body(), 7)))
    chunks, response = await run(make(), response_format=Trip)

    assert {c.type for c in chunks} == {"tool_call", "usage", "finish"}
    assert all(c.tool_name == "Trip" for c in chunks if c.type == "tool_call")
    assert response.text == ""
    assert response.parsed == TRIP
    # the forced tool is how the answer comes, not a call for the caller to run
    assert response.finish_reason == "stop"
    assert response.metadata["stop_reason"] == "tool_use"


async def test_partials_grow_while_the_tool_input_streams(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=answer_body()))
    assert_growing(await streamed_partials(make()))


async def test_list_items_arrive_as_each_element_of_the_tool_input_closes(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    reply = answer_body("StopList", *pieces(STOPS_JSON))
    server.add(Reply(pieces=reply, delay=[0.0] * (len(reply) - 1) + [1.0]))
    seen = await items_as_they_close(make(), server)

    assert [stop for stop, _ in seen] == TRIP.stops
    assert seen[0][1] < len(reply)  # the first stop arrived before the reply had been sent whole
    (tool,) = server.requests[0].json["tools"]
    assert tool["name"] == "StopList"
    assert tool["input_schema"]["properties"]["items"]["type"] == "array"  # a tool input is an object


async def test_with_the_callers_tools_claudes_own_structured_outputs_are_asked_for(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=body(text_block(0, *pieces(TRIP_JSON)))))
    _, response = await run(
        make(), response_format=Trip, tools=[Lookup], tool_choice="auto", output_config={"effort": "low"}
    )

    sent = server.requests[0].json
    assert [tool["name"] for tool in sent["tools"]] == ["Lookup"]  # no forced tool beside the caller's
    assert sent["tool_choice"] == {"type": "auto"}
    assert sent["output_config"] == {
        "effort": "low",
        "format": {"type": "json_schema", "schema": anthropic.transform_schema(Trip)},
    }
    assert response.parsed == TRIP
    assert response.finish_reason == "stop"


async def test_with_thinking_enabled_claudes_own_structured_outputs_are_asked_for(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=body(text_block(0, TRIP_JSON))))
    thinking = {"type": "enabled", "budget_tokens": 1024}
    _, response = await run(make(), response_format=Trip, thinking=thinking)

    sent = server.requests[0].json
    assert "tools" not in sent  # the API refuses a forced tool with thinking
    assert "tool_choice" not in sent
    assert sent["output_config"]["format"]["type"] == "json_schema"
    assert sent["thinking"] == thinking
    assert response.parsed == TRIP


@pytest.mark.parametrize(
    ("response_format", "params", "message"),
    [
        ({"type": "json_object"}, {}, "no JSON mode"),
        ({"type": "array", "items": {"type": "string"}}, {}, "must be an object"),
        (Trip, {"tools": [Lookup], "output_config": {"format": {"type": "json_schema"}}}, "not both"),
        ("Trip", {}, "pydantic model class"),
    ],
)
async def test_structured_output_anthropic_cannot_give_is_refused_before_any_request(
    server: LoopbackServer,
    make: Callable[..., iModel],
    response_format: Any,
    params: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        await make().invoke(HI, response_format=response_format, **params)
    assert server.requests == []


async def test_non_streaming_structured_output_is_parsed_from_the_tool_input(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    message = {
        "id": "msg_01abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6-20260101",
        "content": [{"type": "tool_use", "id": "toolu_A", "name": "Trip", "input": TRIP.model_dump()}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 30},
    }
    server.add(Reply.json(200, message))
    response = await make(stream=False).invoke(HI, response_format=Trip)

    assert response.parsed == TRIP
    assert response.text == ""
    assert response.finish_reason == "stop"


# -- non-streaming ---------------------------------------------------------------------------------


async def test_non_streaming_gives_the_same_response(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    message = {
        "id": "msg_01abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6-20260101",
        "content": [
            {"type": "thinking", "thinking": "Weather first.", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 9, "cache_read_input_tokens": 3},
    }
    server.add(
        Reply.json(200, message),
        Reply(
            pieces=body(
                [
                    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
                    delta(0, type="thinking_delta", thinking="Weather first."),
                    block_stop(0),
                ],
                text_block(1, "Check", "ing."),
                tool_block(2, "toolu_A", "get_weather", '{"city":', ' "Paris"}'),
                start=message_start(10, cache_read_input_tokens=3),
                stop_reason="tool_use",
                output_tokens=9,
            )
        ),
    )
    whole_chunks, whole = await run(make(stream=False))
    _, streamed = await run(make())

    assert server.requests[0].json.get("stream") in (None, False)
    assert [c.type for c in whole_chunks] == ["reasoning", "text", "tool_call", "usage", "finish"]
    for field in ("text", "reasoning", "usage", "finish_reason", "metadata"):
        assert getattr(whole, field) == getattr(streamed, field), field
    assert [(c.id, c.name, c.arguments) for c in whole.tool_calls] == [
        ("toolu_A", "get_weather", {"city": "Paris"})
    ]
    assert [(c.id, c.name, c.arguments) for c in streamed.tool_calls] == [
        ("toolu_A", "get_weather", {"city": "Paris"})
    ]
    assert whole.usage == Usage(input_tokens=13, output_tokens=9, cached_tokens=3)  # 10 + 3 cached
