"""The OpenAI Responses adapter, driven through the real openai SDK against a loopback HTTP server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pydantic
import pytest

from lionflow import Chunk, Usage, iModel
from lionflow.errors import ConfigurationError, StreamInterrupted
from lionflow.services.providers.openai_responses import OpenAIResponsesProvider
from tests.loopback import LoopbackServer, Reply, anthropic_sse
from tests.providers.helpers import Entry, ProviderCase, SdkErrors, openai_error_body, run
from tests.providers.structured import (
    POINT_SCHEMA,
    TRIP_JSON,
    Note,
    Trip,
)

pytestmark = pytest.mark.anyio

MODEL = "gpt-test-2025-01-01"
RESPONSE_ID = "resp_abc123"
USAGE = {
    "input_tokens": 40,
    "input_tokens_details": {"cached_tokens": 8},
    "output_tokens": 25,
    "output_tokens_details": {"reasoning_tokens": 11},
    "total_tokens": 65,
}


# -- wire bodies -----------------------------------------------------------------------------------


def response(status: str = "in_progress", **fields: Any) -> dict[str, Any]:
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "model": MODEL,
        "output": [],
        "usage": None,
        "error": None,
        "incomplete_details": None,
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        **fields,
    }


def body(
    *events: dict[str, Any], terminal: dict[str, Any] | None = None, created: bool = True
) -> list[bytes]:
    """Named SSE events as the Responses API sends them: created, the events, then the terminal one."""
    sequence = [{"type": "response.created", "response": response()}] if created else []
    sequence += list(events)
    if terminal is not None:
        sequence.append(terminal)
    return anthropic_sse([{**event, "sequence_number": n} for n, event in enumerate(sequence)])


def completed(
    status: str = "completed", usage: dict[str, Any] | None = USAGE, **fields: Any
) -> dict[str, Any]:
    kind = {"completed": "response.completed", "incomplete": "response.incomplete"}[status]
    return {"type": kind, "response": response(status, usage=usage, **fields)}


def message_added(index: int = 0) -> dict[str, Any]:
    item = {
        "id": f"msg_{index}",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    return {"type": "response.output_item.added", "output_index": index, "item": item}


def text_delta(delta: str, index: int = 0) -> dict[str, Any]:
    return {
        "type": "response.output_text.delta",
        "item_id": f"msg_{index}",
        "output_index": index,
        "content_index": 0,
        "delta": delta,
        "logprobs": [],
    }


def call_item(
    index: int, call_id: str, name: str, arguments: str = "", status: str = "in_progress"
) -> dict[str, Any]:
    return {
        "id": f"fc_item_{index}",  # the item id: NOT what tool results reference
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def call_added(index: int, call_id: str, name: str) -> dict[str, Any]:
    return {
        "type": "response.output_item.added",
        "output_index": index,
        "item": call_item(index, call_id, name),
    }


def call_done(index: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    item = call_item(index, call_id, name, arguments, "completed")
    return {"type": "response.output_item.done", "output_index": index, "item": item}


def args_delta(index: int, delta: str) -> dict[str, Any]:
    return {
        "type": "response.function_call_arguments.delta",
        "item_id": f"fc_item_{index}",
        "output_index": index,
        "delta": delta,
    }


def text_body(*deltas: str, terminal: dict[str, Any] | None = None) -> list[bytes]:
    return body(message_added(), *(text_delta(d) for d in deltas), terminal=terminal or completed())


def _transcript(body: dict[str, Any]) -> list[Entry]:
    entries: list[Entry] = [("system", body["instructions"])] if "instructions" in body else []
    for item in body["input"]:
        if item["type"] == "message":
            entries.append((item["role"], item["content"]))
        elif item["type"] == "function_call":
            entries.append(("call", item["call_id"], item["name"], json.loads(item["arguments"])))
        else:
            entries.append(("result", item["call_id"], item["output"]))
    return entries


CASE = ProviderCase(
    id="openai_responses",
    provider="openai",
    model=MODEL,
    endpoint="responses",
    endpoint_name="responses",
    path="/v1",
    key_variables=("OPENAI_API_KEY",),
    base_url_variable="OPENAI_BASE_URL",
    text_body=text_body,
    cut_body=lambda *deltas: body(message_added(), *(text_delta(d) for d in deltas)),
    cut_message="before the response completed",
    error_body=openai_error_body,
    transcript=_transcript,
    takes_stop=False,
    errors=SdkErrors(
        authentication=openai.AuthenticationError,
        rate_limit=openai.RateLimitError,
        server=openai.InternalServerError,
        connection=openai.APIConnectionError,
        dropped=openai.APIConnectionError,
    ),
)


# -- helpers ---------------------------------------------------------------------------------------


def kinds(chunks: list[Chunk]) -> list[str]:
    return [chunk.type for chunk in chunks]


# -- streaming -------------------------------------------------------------------------------------


async def test_endpoint_selects_the_responses_adapter(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    assert isinstance(make().adapter, OpenAIResponsesProvider)


async def test_text_streams_as_deltas_then_usage_then_one_finish(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=text_body("Hello", "", ", world", "!")))
    model = make()
    call = model.invoke("hi")
    chunks = [chunk async for chunk in call]

    assert [c.data for c in chunks if c.type == "text"] == [
        "Hello",
        ", world",
        "!",
    ]  # the empty delta skipped
    assert kinds(chunks) == ["text", "text", "text", "usage", "finish"]
    assert chunks[0].metadata == {"provider": "openai", "model": MODEL, "response_id": RESPONSE_ID}
    assert isinstance(chunks[0].raw_response, openai.types.responses.ResponseTextDeltaEvent)
    response = call.response
    assert response is not None
    assert response.text == "Hello, world!"
    assert response.finish_reason == "stop"
    assert chunks[-1].metadata["status"] == "completed"
    assert response.usage == Usage(
        input_tokens=40, output_tokens=25, total_tokens=65, reasoning_tokens=11, cached_tokens=8
    )
    assert response.model == MODEL
    assert not response.incomplete

    sent = server.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/responses")
    assert sent.headers["authorization"] == "Bearer test"
    assert sent.json == {
        "model": MODEL,
        "stream": True,
        "input": [{"type": "message", "role": "user", "content": "hi"}],
    }


async def test_text_index_is_the_output_index(server: LoopbackServer, make: Callable[..., iModel]) -> None:
    server.add(Reply(pieces=body(message_added(2), text_delta("late item", 2), terminal=completed())))
    chunks, _ = await run(make())
    assert [(c.data, c.index) for c in chunks if c.type == "text"] == [("late item", 2)]


async def test_reasoning_summary_and_reasoning_text(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    def summary(delta: str, part: int) -> dict[str, Any]:
        return {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": part,
            "delta": delta,
        }

    reasoning_text = {
        "type": "response.reasoning_text.delta",
        "item_id": "rs_2",
        "output_index": 1,
        "content_index": 0,
        "delta": " Raw thought.",
    }
    events = [summary("First ", 0), summary("idea.", 0), summary("Second ", 1), summary("idea.", 1)]
    server.add(
        Reply(
            pieces=body(*events, reasoning_text, message_added(2), text_delta("42", 2), terminal=completed())
        )
    )
    model = make(reasoning={"effort": "low", "summary": "auto"})
    response = await model.invoke("think")

    # summary parts are paragraphs: a break between them, none inside one
    assert response.reasoning == "First idea.\n\nSecond idea. Raw thought."
    assert response.text == "42"
    assert response.usage is not None
    assert response.usage.reasoning_tokens == 11
    assert server.requests[0].json["reasoning"] == {"effort": "low", "summary": "auto"}


async def test_parallel_tool_calls_carry_call_id_and_name_on_every_fragment(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    events = [
        call_added(0, "call_weather", "get_weather"),
        call_added(1, "call_time", "get_time"),
        args_delta(0, '{"city": '),
        args_delta(1, '{"zone": "U'),
        args_delta(0, '"Paris"}'),
        args_delta(1, 'TC"}'),
        {
            "type": "response.function_call_arguments.done",
            "item_id": "fc_item_0",
            "output_index": 0,
            "arguments": '{"city": "Paris"}',
        },
        call_done(0, "call_weather", "get_weather", '{"city": "Paris"}'),
        call_done(1, "call_time", "get_time", '{"zone": "UTC"}'),
    ]
    server.add(Reply(pieces=body(*events, terminal=completed())))
    model = make()
    call = model.invoke("weather and time?")
    chunks = [chunk async for chunk in call]

    tool_chunks = [c for c in chunks if c.type == "tool_call"]
    assert [(c.index, c.tool_call_id, c.tool_name, c.data) for c in tool_chunks] == [
        (0, "call_weather", "get_weather", '{"city": '),
        (1, "call_time", "get_time", '{"zone": "U'),
        (0, "call_weather", "get_weather", '"Paris"}'),
        (1, "call_time", "get_time", 'TC"}'),
    ]  # the .done events repeat the whole arguments and add nothing
    response = call.response
    assert response is not None
    assert [(t.id, t.name, t.arguments, t.index) for t in response.tool_calls] == [
        ("call_weather", "get_weather", {"city": "Paris"}, 0),
        ("call_time", "get_time", {"zone": "UTC"}, 1),
    ]
    assert response.finish_reason == "tool_calls"
    assert chunks[-1].metadata["status"] == "completed"


async def test_arguments_sent_only_whole_still_make_one_tool_call_chunk(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    events = [
        call_added(0, "call_a", "lookup"),
        call_done(0, "call_a", "lookup", '{"q": "x"}'),  # no deltas at all
        call_done(1, "call_b", "fetch", '{"id": 7}'),  # not even an output_item.added
    ]
    server.add(Reply(pieces=body(*events, terminal=completed())))
    chunks, _ = await run(make())

    tool_chunks = [c for c in chunks if c.type == "tool_call"]
    assert [(c.tool_call_id, c.tool_name, c.data, c.index) for c in tool_chunks] == [
        ("call_a", "lookup", '{"q": "x"}', 0),
        ("call_b", "fetch", '{"id": 7}', 1),
    ]
    assert chunks[-1].finish_reason == "tool_calls"


async def test_refusal_streams_as_refusal_chunks(server: LoopbackServer, make: Callable[..., iModel]) -> None:
    def refusal(delta: str) -> dict[str, Any]:
        return {
            "type": "response.refusal.delta",
            "item_id": "msg_0",
            "output_index": 0,
            "content_index": 0,
            "delta": delta,
        }

    server.add(
        Reply(
            pieces=body(
                message_added(), refusal("I can't "), refusal("help with that."), terminal=completed()
            )
        )
    )
    model = make()
    response = await model.invoke("something bad")
    assert response.refusal == "I can't help with that."
    assert response.text == ""
    assert response.finish_reason == "stop"


@pytest.mark.parametrize(
    ("reason", "expected"), [("max_output_tokens", "length"), ("content_filter", "content_filter")]
)
async def test_incomplete_response_finish_reasons(
    server: LoopbackServer, make: Callable[..., iModel], reason: str, expected: str
) -> None:
    terminal = completed("incomplete", incomplete_details={"reason": reason})
    server.add(Reply(pieces=text_body("Once upon a", terminal=terminal)))
    model = make(max_tokens=3)
    call = model.invoke("story")
    chunks = [chunk async for chunk in call]

    assert kinds(chunks) == ["text", "usage", "finish"]
    finish = chunks[-1]
    assert finish.finish_reason == expected
    assert finish.metadata["status"] == "incomplete"
    assert finish.metadata["incomplete_reason"] == reason
    assert call.response is not None
    assert call.response.text == "Once upon a"
    assert not call.response.incomplete  # the provider ended it normally; nothing was lost
    assert server.requests[0].json["max_output_tokens"] == 3


async def test_no_usage_chunk_when_the_server_reports_none(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=text_body("ok", terminal=completed(usage=None))))
    chunks, _ = await run(make())
    assert kinds(chunks) == ["text", "finish"]


async def test_usage_without_detail_objects(server: LoopbackServer, make: Callable[..., iModel]) -> None:
    usage = {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}  # an OpenAI-compatible server
    server.add(Reply(pieces=text_body("ok", terminal=completed(usage=usage))))
    chunks, _ = await run(make())
    assert chunks[-2].usage == Usage(input_tokens=5, output_tokens=2, total_tokens=7)


# -- errors ----------------------------------------------------------------------------------------


async def _interrupted(
    server: LoopbackServer, model: iModel, pieces: list[bytes]
) -> tuple[StreamInterrupted, list[Chunk]]:
    server.add(Reply(pieces=pieces))
    chunks: list[Chunk] = []
    with pytest.raises(StreamInterrupted) as caught:
        async for chunk in model.invoke("hi"):
            chunks.append(chunk)
    return caught.value, chunks


async def test_error_event_mid_stream_interrupts_with_the_partial_response(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    error = {"type": "error", "code": "server_error", "message": "The server had an error", "param": None}
    pieces = body(message_added(), text_delta("Partial "), text_delta("answer"), error)
    exc, chunks = await _interrupted(server, make(), pieces)

    assert [c.data for c in chunks] == ["Partial ", "answer"]
    assert "The server had an error" in str(exc)
    assert exc.retryable  # a server error is transient
    assert exc.response is not None
    assert exc.response.text == "Partial answer"
    assert exc.response.incomplete
    assert exc.response.finish_reason == "error"


async def test_nested_error_event_raised_by_the_sdk_interrupts(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    # The API also sends error events with the fields nested under "error"; the SDK raises for those.
    error = {
        "type": "error",
        "error": {"type": "invalid_request_error", "code": "bad_input", "message": "nope"},
    }
    exc, _ = await _interrupted(server, make(), body(message_added(), text_delta("So far"), error))

    assert isinstance(exc.__cause__, openai.APIError)
    assert "nope" in str(exc)
    assert not exc.retryable
    assert exc.response is not None
    assert exc.response.text == "So far"


async def test_rate_limit_error_event_is_retryable(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    error = {"type": "error", "code": "rate_limit_exceeded", "message": "slow down", "param": None}
    exc, _ = await _interrupted(server, make(), body(message_added(), text_delta("x"), error))
    assert exc.retryable


async def test_failed_response_interrupts(server: LoopbackServer, make: Callable[..., iModel]) -> None:
    failed = {
        "type": "response.failed",
        "response": response("failed", error={"code": "invalid_prompt", "message": "prompt flagged"}),
    }
    exc, _ = await _interrupted(server, make(), body(message_added(), text_delta("Begin"), failed))
    assert "invalid_prompt" in str(exc)
    assert "prompt flagged" in str(exc)
    assert not exc.retryable
    assert exc.response is not None
    assert exc.response.text == "Begin"
    assert exc.response.incomplete


# -- what the server receives ----------------------------------------------------------------------


async def test_messages_become_instructions_and_input_items(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=text_body("done")))
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": {"zone": "CET"}},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": {"time": "12:00"}},
    ]
    await run(make(), messages)

    sent = server.requests[0].json
    assert sent["instructions"] == "Be brief.\n\nUse metric units."
    assert sent["input"] == [
        {"type": "message", "role": "user", "content": "Weather in Paris?"},
        {"type": "message", "role": "assistant", "content": "Checking."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": '{"zone": "CET"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "18 C, sunny"},
        {"type": "function_call_output", "call_id": "call_2", "output": '{"time": "12:00"}'},
    ]


async def test_parameters_map_to_responses_names(server: LoopbackServer, make: Callable[..., iModel]) -> None:
    server.add(Reply(pieces=text_body("ok")))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        },
        {"type": "web_search"},  # a built-in tool goes as given
    ]
    model = make(temperature=0.3, top_p=0.9, max_tokens=50)
    await run(model, "hi", tools=tools, tool_choice="get_weather", truncation="auto", custom_flag={"a": 1})

    sent = server.requests[0].json
    assert sent["temperature"] == 0.3
    assert sent["top_p"] == 0.9
    assert sent["max_output_tokens"] == 50
    assert "max_tokens" not in sent
    assert sent["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            "strict": False,
        },
        {"type": "web_search"},
    ]
    assert sent["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert sent["truncation"] == "auto"  # an SDK parameter passes through
    assert sent["custom_flag"] == {"a": 1}  # an unknown one reaches the body unchanged
    assert "stream_options" not in sent  # usage always comes with response.completed


@pytest.mark.parametrize(("choice", "wire"), [("auto", "auto"), ("any", "required"), ("none", "none")])
async def test_tool_choice_modes(
    server: LoopbackServer, make: Callable[..., iModel], choice: str, wire: str
) -> None:
    server.add(Reply(pieces=text_body("ok")))
    tools = [{"name": "f", "parameters": {"type": "object", "properties": {}}, "strict": True}]
    await run(make(), "hi", tools=tools, tool_choice=choice)
    sent = server.requests[0].json
    assert sent["tool_choice"] == wire
    assert sent["tools"][0]["strict"] is True  # a tool asking for strict mode keeps it


@pytest.mark.parametrize(("param", "value"), [("stop", ["END"]), ("seed", 7)])
async def test_stop_and_seed_are_refused_before_any_request(
    server: LoopbackServer, make: Callable[..., iModel], param: str, value: Any
) -> None:
    model = make(**{param: value})
    with pytest.raises(ConfigurationError, match=f"Responses API does not accept '{param}'"):
        await model.invoke("hi")
    assert server.requests == []


# -- structured output -----------------------------------------------------------------------------


async def test_a_model_class_is_sent_as_the_text_format(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(*(Reply(pieces=text_body(TRIP_JSON)) for _ in range(2)))
    model = make()
    await run(model, "hi", response_format=Trip, text={"verbosity": "low"})
    with pytest.raises(pydantic.ValidationError):  # the reply is a Trip, not a Note
        await run(model, "hi", response_format=Note)

    assert server.requests[0].json["text"] == {
        "verbosity": "low",  # the caller's own text options stay
        "format": {"type": "json_schema", "name": "Trip", "schema": Trip.model_json_schema(), "strict": True},
    }
    # strict only where the schema meets strict mode's rules (a default makes a field optional)
    assert server.requests[1].json["text"]["format"]["strict"] is False
    assert "response_format" not in server.requests[0].json


async def test_a_json_schema_dict_and_the_chat_form_both_become_the_text_format(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(*(Reply(pieces=text_body('{"x": 1, "y": 2}')) for _ in range(2)))
    model = make()
    await run(model, "hi", response_format=POINT_SCHEMA)
    chat_form = {"type": "json_schema", "json_schema": {"name": "P", "schema": POINT_SCHEMA, "strict": False}}
    await run(model, "hi", response_format=chat_form)

    assert server.requests[0].json["text"]["format"] == {
        "type": "json_schema",
        "name": "Point",
        "schema": POINT_SCHEMA,
        "strict": True,
    }
    assert server.requests[1].json["text"]["format"] == {
        "type": "json_schema",
        "name": "P",
        "schema": POINT_SCHEMA,
        "strict": False,
    }


async def test_response_format_and_a_text_format_together_are_refused(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        await make().invoke("hi", response_format=Trip, text={"format": {"type": "text"}})
    assert server.requests == []


# -- non-streaming ---------------------------------------------------------------------------------


async def test_non_streaming_gives_the_same_response(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    output = [
        {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Think."}]},
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Hello there.", "annotations": []}],
        },
        call_item(2, "call_x", "lookup", '{"q": "lionflow"}', "completed"),
    ]
    server.add(Reply.json(200, response("completed", output=output, usage=USAGE)))
    model = make(stream=False)
    call = model.invoke("hi")
    chunks = [chunk async for chunk in call]

    assert kinds(chunks) == ["reasoning", "text", "tool_call", "usage", "finish"]
    assert server.requests[0].json["stream"] is False
    response_ = call.response
    assert response_ is not None
    assert response_.reasoning == "Think."
    assert response_.text == "Hello there."
    assert [(t.id, t.name, t.arguments, t.index) for t in response_.tool_calls] == [
        ("call_x", "lookup", {"q": "lionflow"}, 2)
    ]
    assert response_.usage == Usage(
        input_tokens=40, output_tokens=25, total_tokens=65, reasoning_tokens=11, cached_tokens=8
    )
    assert response_.finish_reason == "tool_calls"
    assert chunks[-1].metadata == {
        "provider": "openai",
        "model": MODEL,
        "response_id": RESPONSE_ID,
        "status": "completed",
    }


async def test_non_streaming_refusal_and_incomplete(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    output = [
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "incomplete",
            "content": [{"type": "refusal", "refusal": "No."}],
        }
    ]
    server.add(
        Reply.json(
            200, response("incomplete", output=output, incomplete_details={"reason": "content_filter"})
        )
    )
    model = make(stream=False)
    response_ = await model.invoke("hi")
    assert response_.refusal == "No."
    assert response_.finish_reason == "content_filter"
    assert response_.metadata["incomplete_reason"] == "content_filter"


async def test_non_streaming_failed_response_raises(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    failed = response("failed", error={"code": "server_error", "message": "try again"})
    server.add(Reply.json(200, failed))
    model = make(stream=False)
    with pytest.raises(Exception, match="try again") as caught:
        await model.invoke("hi")
    assert getattr(caught.value, "retryable", False)


async def test_message_conversion_rejects_unknown_roles() -> None:
    from lionflow.services.providers.openai_responses_request import responses_input

    with pytest.raises(ConfigurationError, match="function"):
        responses_input([{"role": "function", "content": "x"}])
    with pytest.raises(ConfigurationError, match="not supported"):
        responses_input([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])
    # a call without arguments goes out as an empty object (with its result: an unanswered call is not sent)
    call = {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f"}}]}
    result = {"role": "tool", "tool_call_id": "c", "content": "x"}
    assert json.loads(responses_input([call, result])[1][0]["arguments"]) == {}
