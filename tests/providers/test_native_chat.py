"""Chat Completions (openai, groq) through both transports: every stream shape the adapters' own
tests build, requests with history and parameters, structured output, whole completions and
mid-stream errors; the native side must give what the SDK side gives."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lionflow import iModel
from tests.loopback import LoopbackServer, Reply, sse
from tests.providers import test_groq_chat as groq_case
from tests.providers import test_openai_chat as openai_case
from tests.providers.native import both
from tests.providers.structured import TRIP_JSON, Trip, pieces
from tests.providers.test_openai_chat import GetWeather, event, text_stream, tool

pytestmark = pytest.mark.anyio


def openai_model(server: LoopbackServer, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "api_key": "sk-test",
        "base_url": server.url + "/v1",
    } | {
        "max_retries": 0,
        **extra,
    }


def groq_model(server: LoopbackServer, **extra: Any) -> dict[str, Any]:
    return {"provider": "groq", "model": groq_case.MODEL, "api_key": "gsk-test", "base_url": server.url} | {
        "max_retries": 0,
        **extra,
    }


OPENAI_STREAMS: dict[str, list[Any]] = {
    "text": text_stream("Hel", "lo"),
    "length": text_stream("cut", finish="length"),
    "content_filter": text_stream("no", finish="content_filter"),
    "reasoning_content": [
        event({"role": "assistant", "reasoning_content": "Think"}),
        event({"reasoning_content": "ing."}),
        event({"content": "Answer"}),
        event(finish="stop", usage=openai_case.USAGE),
    ],
    "reasoning_both_names": [
        event({"reasoning_content": "once", "reasoning": "once"}),
        event({"content": "x"}),
        event(finish="stop"),
    ],
    "refusal": [event({"refusal": "I can't"}), event({"refusal": " help."}), event(finish="stop")],
    "parallel_tools": [
        event({"role": "assistant", "tool_calls": [tool(0, call_id="call_a", name="GetWeather")]}),
        event({"tool_calls": [tool(0, arguments='{"ci')]}),
        event({"tool_calls": [tool(1, call_id="call_b", name="GetTime", arguments='{"tz":')]}),
        event({"tool_calls": [tool(0, arguments='ty": "Oslo"}'), tool(1, arguments=' "UTC"}')]}),
        event(finish="tool_calls"),
        event(choices=[], usage=openai_case.USAGE),
    ],
    "tool_without_arguments": [
        event({"tool_calls": [tool(0, call_id="call_z", name="Now")]}),
        event(finish="function_call"),
    ],
    "repeated_finish": [event({"content": "a"}), event(finish="stop"), event(finish="stop")],
    "two_choices": [
        event(choices=[{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]),
        event(choices=[{"index": 1, "delta": {"content": "b"}, "finish_reason": None}]),
        event(finish="stop"),
    ],
    "deepseek_usage_on_finish": [
        event({"content": "x"}),
        event(finish="stop", usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
        | {
            "usage": {
                "prompt_tokens": 3,
                "completion_tokens": 1,
                "total_tokens": 4,
                "prompt_cache_hit_tokens": 2,
            }
        },
    ],
    "error_chunk_mid_stream": [
        event({"content": "partial"}),
        {"error": {"message": "upstream overloaded", "type": "server_error", "code": 502}},
    ],
    "error_chunk_permanent": [
        event({"content": "p"}),
        {"error": {"message": "bad tool", "code": "tool_use_failed"}},
    ],
    "error_chunk_without_message": [event({"content": "p"}), {"error": {"type": "server_error"}}],
    "malformed_event": [event({"content": "a"}), "{not json"],
    "no_finish": [event({"content": "a"})],
}


@pytest.mark.parametrize("shape", list(OPENAI_STREAMS))
async def test_openai_stream_shapes_read_the_same(server: LoopbackServer, shape: str) -> None:
    body = sse(OPENAI_STREAMS[shape])
    await both(
        server,
        lambda: [Reply(pieces=body)],
        model=openai_model(server),
        compare_messages=shape != "malformed_event",
    )


async def test_openai_named_events_are_chunks_and_an_error_in_any_event_ends_the_stream(
    server: LoopbackServer,
) -> None:
    body = [
        b"event: message\ndata: " + json.dumps(event({"content": "a"})).encode() + b"\n\n",
        b"event: anything\ndata: " + json.dumps({"error": {"message": "stop now"}}).encode() + b"\n\n",
    ]
    sdk, _ = await both(server, lambda: [Reply(pieces=body)], model=openai_model(server))
    assert sdk.error is not None


GROQ_STREAMS: dict[str, list[bytes]] = {
    "text": sse(groq_case.text_stream("Hel", "lo")),
    "usage_twice": sse([groq_case.event({"content": "x"}), groq_case.final(top_level_usage=True)]),
    "reasoning": sse(
        [
            groq_case.event({"role": "assistant", "reasoning": "Hmm", "channel": "analysis"}),
            groq_case.event({"content": "Hi"}),
            groq_case.final(),
        ]
    ),
    "whole_tools": sse(
        [
            groq_case.event(
                {
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "index": 0,
                            "function": {"name": "A", "arguments": "{}"},
                        },
                        {
                            "id": "c2",
                            "type": "function",
                            "index": 1,
                            "function": {"name": "B", "arguments": '{"x":1}'},
                        },
                    ]
                }
            ),
            groq_case.final("tool_calls"),
        ]
    ),
    "tool_use_failed": [
        *sse([groq_case.event({"content": "a"})], done=False),
        groq_case.error_event(
            {"message": "invalid", "type": "invalid_request_error", "code": "tool_use_failed"}
        ),
    ],
    "transient_error_event": [
        *sse([groq_case.event({"content": "a"})], done=False),
        groq_case.error_event({"message": "busy", "type": "internal_server_error"}),
    ],
    "x_groq_error": sse([groq_case.event({"content": "a"}, x_groq={"id": "r", "error": "over capacity"})]),
    "named_event_ignored": [
        b"event: progress\ndata: " + json.dumps(groq_case.event({"content": "ignored"})).encode() + b"\n\n",
        *sse(groq_case.text_stream("kept")),
    ],
}


@pytest.mark.parametrize("shape", list(GROQ_STREAMS))
async def test_groq_stream_shapes_read_the_same(server: LoopbackServer, shape: str) -> None:
    await both(server, lambda: [Reply(pieces=GROQ_STREAMS[shape])], model=groq_model(server))


HISTORY: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": "Use metric."},
    {
        "role": "user",
        "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Paris?"}],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "GetWeather", "arguments": {"city": "Paris"}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18°C, sunny"},
    {"role": "user", "content": "And tomorrow?"},
]
PARAMS: dict[str, Any] = {
    "max_tokens": 50,
    "stop": "END",
    "top_p": 0.9,
    "tools": [GetWeather],
    "tool_choice": "GetWeather",
    "frequency_penalty": 0.5,
    "top_k": 40,  # not an SDK parameter: sent in the body as given
}


@pytest.mark.parametrize("provider", ["openai", "groq"])
async def test_a_request_with_history_and_parameters_is_sent_the_same(
    server: LoopbackServer, provider: str
) -> None:
    if provider == "openai":
        model, body = openai_model(server, temperature=0.2, seed=7), sse(text_stream("ok"))
    else:
        model, body = groq_model(server, temperature=0.2, seed=7), sse(groq_case.text_stream("ok"))
    sdk, _ = await both(server, lambda: [Reply(pieces=body)], model=model, messages=HISTORY, params=PARAMS)
    sent = sdk.requests[0].json
    assert sent["top_k"] == 40
    assert sent["stream"] is True


@pytest.mark.parametrize("provider", ["openai", "groq"])
async def test_structured_output_streams_the_same_partial_objects(
    server: LoopbackServer, provider: str
) -> None:
    if provider == "openai":
        model = openai_model(server)
        body = sse([event({"content": piece}) for piece in pieces(TRIP_JSON)] + text_stream(finish="stop"))
    else:
        model = groq_model(server)
        body = sse([groq_case.event({"content": piece}) for piece in pieces(TRIP_JSON)] + [groq_case.final()])
    sdk, _ = await both(server, lambda: [Reply(pieces=body)], model=model, params={"response_format": Trip})
    assert sdk.response is not None
    assert Trip.model_validate(sdk.response["parsed"]) == Trip.model_validate_json(TRIP_JSON)


COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-9",
    "object": "chat.completion",
    "created": 1,
    "model": openai_case.MODEL,
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "reasoning_content": "Need the weather.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "GetWeather", "arguments": '{"city": "Oslo"}'},
                    },
                    {"id": "call_2", "type": "custom", "custom": {"name": "Grep", "input": "error"}},
                ],
            },
        }
    ],
    "usage": openai_case.USAGE,
}


@pytest.mark.parametrize("provider", ["openai", "groq"])
async def test_a_whole_completion_reads_the_same(server: LoopbackServer, provider: str) -> None:
    model = (openai_model if provider == "openai" else groq_model)(server, stream=False)
    completion = COMPLETION
    if provider == "groq":  # Groq has no custom tools, and its SDK drops the field
        message = COMPLETION["choices"][0]["message"]
        choice = COMPLETION["choices"][0] | {"message": message | {"tool_calls": message["tool_calls"][:1]}}
        completion = COMPLETION | {"choices": [choice]}
    sdk, _ = await both(server, lambda: [Reply.json(200, completion)], model=model)
    assert sdk.response is not None
    assert sdk.response["text"] == "Checking."
    assert sdk.requests[0].json["stream"] is False


@pytest.mark.parametrize("provider", ["openai", "groq"])
async def test_a_whole_completion_that_is_not_json_fails_the_same(
    server: LoopbackServer, provider: str
) -> None:
    model = (openai_model if provider == "openai" else groq_model)(server, stream=False)

    def reply() -> list[Reply]:
        return [
            Reply(pieces=[b"<html>oops</html>"], headers={"content-type": "application/json"}, chunked=False)
        ]

    sdk, _ = await both(server, reply, model=model, compare_messages=False)
    assert sdk.error is not None


async def test_openai_client_options_reach_the_server_as_the_sdk_sends_them(server: LoopbackServer) -> None:
    model = openai_model(server, organization="org-1", project="proj-1", default_headers={"X-Team": "core"})
    sdk, native = await both(server, lambda: [Reply(pieces=sse(text_stream("ok")))], model=model)
    assert native.requests[0].headers["x-team"] == sdk.requests[0].headers["x-team"] == "core"
    assert native.requests[0].headers["openai-organization"] == "org-1"


async def test_raw_response_is_the_decoded_event(server: LoopbackServer) -> None:
    server.add(Reply(pieces=sse(text_stream("Hel", "lo"))))
    model = iModel(**openai_model(server, transport="native"))
    try:
        chunks = [chunk async for chunk in model.invoke("hi")]
    finally:
        await model.aclose()
    first = chunks[0]
    assert first.raw_response == event({"content": "Hel"})
    assert chunks[-1].type == "finish"
    assert chunks[-1].raw_response["choices"][0]["finish_reason"] == "stop"
