"""provider="groq": the real groq SDK against a loopback HTTP server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import groq
import httpx
import pytest

from lionflow import StreamInterrupted, Usage, iModel
from tests.loopback import LoopbackServer, Reply, sse
from tests.providers.helpers import HI, ProviderCase, SdkErrors, chat_transcript, openai_error_body, run
from tests.providers.structured import (
    POINT_SCHEMA,
    TRIP_JSON,
    Trip,
)

pytestmark = pytest.mark.anyio

MODEL = "openai/gpt-oss-120b"
GROQ_USAGE = {
    "queue_time": 0.005,
    "prompt_tokens": 339,
    "prompt_time": 0.017,
    "completion_tokens": 58,
    "completion_time": 0.125,
    "total_tokens": 397,
    "total_time": 0.142,
    "completion_tokens_details": {"reasoning_tokens": 38},
}
EXPECTED_USAGE = Usage(input_tokens=339, output_tokens=58, total_tokens=397, reasoning_tokens=38)


def event(
    delta: dict[str, Any] | None = None,
    *,
    finish: str | None = None,
    x_groq: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One Groq ``chat.completion.chunk``."""
    body: dict[str, Any] = {
        "id": "chatcmpl-groq-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}],
    }
    if x_groq is not None:
        body["x_groq"] = x_groq
    if usage is not None:
        body["usage"] = usage
    return body


def final(finish: str = "stop", *, top_level_usage: bool = False) -> dict[str, Any]:
    """Groq's last chunk: the finish reason with usage in ``x_groq`` (and maybe at the top level)."""
    return event(
        finish=finish,
        x_groq={"id": "req_1", "usage": GROQ_USAGE},
        usage=GROQ_USAGE if top_level_usage else None,
    )


def text_stream(*texts: str, finish: str = "stop") -> list[dict[str, Any]]:
    return [
        event({"role": "assistant", "content": ""}, x_groq={"id": "req_1", "seed": 1}),
        *(event({"content": text}) for text in texts),
        final(finish),
    ]


def error_event(error: dict[str, Any]) -> bytes:
    return f"event: error\ndata: {json.dumps({'error': error})}\n\n".encode()


CASE = ProviderCase(
    id="groq",
    provider="groq",
    model=MODEL,
    endpoint_name="chat",
    key_variables=("GROQ_API_KEY",),
    base_url_variable="GROQ_BASE_URL",
    text_body=lambda *texts: sse(text_stream(*texts)),
    cut_body=lambda *texts: sse([event({"content": text}) for text in texts], done=False),
    cut_message="without a finish reason",
    error_body=openai_error_body,
    transcript=chat_transcript,
    errors=SdkErrors(
        authentication=groq.AuthenticationError,
        rate_limit=groq.RateLimitError,
        server=groq.InternalServerError,
        connection=groq.APIConnectionError,
        dropped=httpx.RemoteProtocolError,  # the groq SDK lets httpx's errors through mid-stream
    ),
)


# -- streaming ---------------------------------------------------------------------------------------


async def test_reasoning_then_text_then_usage_from_x_groq_then_finish(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(
        Reply(
            pieces=sse(
                [
                    event({"role": "assistant", "content": ""}, x_groq={"id": "req_1", "seed": 1}),
                    event({"reasoning": "The user", "channel": "analysis"}),
                    event({"reasoning": " says hi.", "channel": "analysis"}),
                    event({"content": "Hello"}),
                    event({"content": " there."}),
                    final("stop"),
                ]
            )
        )
    )
    chunks, response = await run(make())

    assert [(c.type, c.data) for c in chunks] == [
        ("reasoning", "The user"),
        ("reasoning", " says hi."),
        ("text", "Hello"),
        ("text", " there."),
        ("usage", ""),
        ("finish", ""),
    ]
    assert response.reasoning == "The user says hi."
    assert response.text == "Hello there."
    assert response.usage == EXPECTED_USAGE
    assert response.finish_reason == "stop"
    assert chunks[-1].metadata == {
        "provider": "groq",
        "model": MODEL,
        "response_id": "chatcmpl-groq-1",
        "finish_reason": "stop",
    }
    assert server.requests[0].path == "/openai/v1/chat/completions"


async def test_usage_both_in_x_groq_and_top_level_is_reported_once(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=sse([event({"content": "ok"}), final("stop", top_level_usage=True)])))
    chunks, response = await run(make())

    assert [c.type for c in chunks] == ["text", "usage", "finish"]
    assert response.usage == EXPECTED_USAGE


async def test_whole_parallel_tool_calls_become_one_chunk_each(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    calls = [
        {
            "id": "fc_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'},
            "index": 0,
        },
        {
            "id": "fc_b",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"tz": "PET"}'},
            "index": 1,
        },
    ]
    server.add(
        Reply(
            pieces=sse(
                [event({"reasoning": "Two calls."}), event({"tool_calls": calls}), final("tool_calls")]
            )
        )
    )
    chunks, response = await run(make())

    assert [(c.index, c.tool_call_id, c.tool_name, c.data) for c in chunks if c.type == "tool_call"] == [
        (0, "fc_a", "get_weather", '{"city": "Lima"}'),
        (1, "fc_b", "get_time", '{"tz": "PET"}'),
    ]
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("fc_a", "get_weather", {"city": "Lima"}),
        ("fc_b", "get_time", {"tz": "PET"}),
    ]
    assert response.finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("native", "normalized"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
    ],
)
async def test_finish_reasons_are_normalized_and_native_value_kept(
    server: LoopbackServer, make: Callable[..., iModel], native: str, normalized: str
) -> None:
    server.add(Reply(pieces=sse(text_stream("x", finish=native))))
    chunks, response = await run(make())

    assert [c.type for c in chunks].count("finish") == 1
    assert chunks[-1].finish_reason == normalized
    assert response.finish_reason == normalized
    assert chunks[-1].metadata["finish_reason"] == native


# -- errors -----------------------------------------------------------------------------------------


async def test_tool_use_failed_error_event_interrupts_and_is_not_retryable(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    error = {
        "message": "Tool call validation failed: parameters for tool lookup did not match schema",
        "type": "invalid_request_error",
        "code": "tool_use_failed",
        "status_code": 400,
    }
    pieces = sse([event({"reasoning": "Call the"}), event({"reasoning": " tool."})], done=False)
    server.add(Reply(pieces=[*pieces, error_event(error)]))
    seen: list[str] = []

    with pytest.raises(StreamInterrupted, match="tool_use_failed") as caught:
        async for chunk in make(max_retries=2, retry_initial_delay=0.001).invoke(HI):
            seen.append(chunk.data)

    assert seen == ["Call the", " tool."]
    assert not caught.value.retryable
    assert isinstance(caught.value.__cause__, groq.APIError)
    assert caught.value.response is not None
    assert caught.value.response.reasoning == "Call the tool."
    assert caught.value.response.incomplete
    assert len(server.requests) == 1


async def test_transient_error_event_is_a_retryable_interruption(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    pieces = sse([event({"content": "Hal"})], done=False)
    server.add(
        Reply(pieces=[*pieces, error_event({"message": "Service unavailable", "type": "server_error"})])
    )

    with pytest.raises(StreamInterrupted) as caught:
        await make().invoke(HI)

    assert caught.value.retryable
    assert caught.value.response is not None
    assert caught.value.response.text == "Hal"


async def test_x_groq_error_stops_the_stream(server: LoopbackServer, make: Callable[..., iModel]) -> None:
    server.add(
        Reply(
            pieces=sse([event({"content": "Par"}), event(x_groq={"id": "req_1", "error": "over capacity"})])
        )
    )

    with pytest.raises(StreamInterrupted, match="over capacity") as caught:
        await make().invoke(HI)

    assert caught.value.response is not None
    assert caught.value.response.text == "Par"


# -- what the server receives ---------------------------------------------------------------------


async def test_request_carries_converted_messages_and_mapped_parameters(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=sse(text_stream("ok"))))
    messages: list[dict[str, Any]] = [
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "fc_1", "function": {"name": "weather", "arguments": '{"city":"Nice"}'}}],
        },
        {"role": "tool", "tool_call_id": "fc_1", "content": [{"type": "text", "text": "22°C"}]},
    ]
    tool = {
        "name": "weather",
        "description": "Weather now",
        "parameters": {"type": "object", "properties": {}},
    }

    await run(
        make(temperature=0.3),
        messages,
        max_tokens=200,
        stop=["END"],
        seed=11,
        tools=[tool],
        tool_choice="auto",
        reasoning_format="parsed",
        my_server_flag=True,
    )

    body = server.requests[0].json
    assert body["messages"] == [
        {"role": "system", "content": "Answer in French."},  # Groq has no developer role
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "fc_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Nice"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "fc_1", "content": "22°C"},
    ]
    assert body["model"] == MODEL
    assert body["temperature"] == 0.3
    assert body["max_completion_tokens"] == 200
    assert "max_tokens" not in body
    assert body["stop"] == ["END"]
    assert body["seed"] == 11
    assert body["tools"] == [{"type": "function", "function": tool}]
    assert body["tool_choice"] == "auto"
    assert body["reasoning_format"] == "parsed"  # a Groq SDK parameter lionflow does not name
    assert body["my_server_flag"] is True  # unknown to the SDK: passed through in the body
    assert body["stream"] is True
    assert "stream_options" not in body  # Groq reports usage in x_groq without it


# -- structured output -----------------------------------------------------------------------------


async def test_a_model_class_is_sent_as_json_mode_with_the_schema_in_the_system_prompt(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(*(Reply(pieces=sse(text_stream(TRIP_JSON))) for _ in range(2)))
    model = make()
    with_system = [{"role": "system", "content": "Plan trips."}, {"role": "user", "content": "Norway?"}]
    await run(model, with_system, response_format=Trip)
    await run(model, "Norway?", response_format=Trip)

    first, second = (received.json for received in server.requests)
    assert first["response_format"] == {"type": "json_object"}  # the mode every Groq model has
    note = first["messages"][0]["content"].removeprefix("Plan trips.\n\n")
    assert note != first["messages"][0]["content"]  # added to the caller's system prompt, after it
    assert "JSON" in note  # JSON mode refuses a prompt without the word
    assert json.loads(note[note.index("{") :]) == Trip.model_json_schema()
    assert first["messages"][1:] == [{"role": "user", "content": "Norway?"}]
    # without a system prompt, the note becomes one, first
    assert second["messages"] == [{"role": "system", "content": note}, {"role": "user", "content": "Norway?"}]


async def test_a_json_schema_dict_gets_json_mode_and_a_response_format_dict_goes_as_given(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(*(Reply(pieces=sse(text_stream('{"x": 1, "y": 2}'))) for _ in range(2)))
    given = {"type": "json_schema", "json_schema": {"name": "Point", "schema": POINT_SCHEMA, "strict": True}}
    model = make()
    await run(model, response_format=POINT_SCHEMA)
    await run(model, response_format=given)

    first, second = (received.json for received in server.requests)
    assert first["response_format"] == {"type": "json_object"}
    note = first["messages"][0]["content"]
    assert json.loads(note[note.index("{") :]) == POINT_SCHEMA
    assert second["response_format"] == given  # Groq's own structured outputs, on the models that have it
    assert second["messages"] == HI


# -- non-streaming ----------------------------------------------------------------------------------


async def test_non_streaming_call_gives_the_same_response_as_streaming(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    call = {
        "id": "fc_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
    }
    completion = {
        "id": "chatcmpl-groq-2",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Looking.",
                    "reasoning": "Need data.",
                    "tool_calls": [call],
                },
            }
        ],
        "usage": GROQ_USAGE,
    }
    streamed = [
        event({"reasoning": "Need data."}),
        event({"content": "Looking."}),
        event({"tool_calls": [call | {"index": 0}]}),
        final("tool_calls"),
    ]
    server.add(Reply.json(200, completion), Reply(pieces=sse(streamed)))

    chunks, whole = await run(make(stream=False))
    _, stream = await run(make())

    assert [c.type for c in chunks] == ["reasoning", "text", "tool_call", "usage", "finish"]
    fields = {"text", "reasoning", "tool_calls", "usage", "finish_reason", "model", "incomplete"}
    assert whole.model_dump(include=fields) == stream.model_dump(include=fields)
    assert whole.usage == EXPECTED_USAGE
    assert server.requests[0].json.get("stream") in (False, None)
