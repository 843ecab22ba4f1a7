"""provider="openai" (Chat Completions): the real openai SDK against a loopback HTTP server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pydantic
import pytest
from pydantic import BaseModel, ConfigDict

from lionflow import ConfigurationError, StreamInterrupted, Usage, iModel
from lionflow.services.providers._structured import chat_response_format, strict_ready
from lionflow.services.providers.openai_chat import OpenAIChatProvider
from lionflow.services.providers.openai_chat_request import request_arguments
from tests.loopback import LoopbackServer, Reply, sse
from tests.providers.helpers import HI, ProviderCase, SdkErrors, chat_transcript, openai_error_body, run
from tests.providers.structured import (
    POINT_SCHEMA,
    TRIP_JSON,
    Note,
    Trip,
)

pytestmark = pytest.mark.anyio

MODEL = "gpt-4o-mini-2024-07-18"
USAGE = {
    "prompt_tokens": 20,
    "completion_tokens": 12,
    "total_tokens": 32,
    "prompt_tokens_details": {"cached_tokens": 8},
    "completion_tokens_details": {"reasoning_tokens": 5},
}
EXPECTED_USAGE = Usage(
    input_tokens=20, output_tokens=12, total_tokens=32, reasoning_tokens=5, cached_tokens=8
)


def event(
    delta: dict[str, Any] | None = None,
    *,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    choices: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as OpenAI sends it."""
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
        if choices is None
        else choices,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def text_stream(*texts: str, finish: str = "stop") -> list[dict[str, Any]]:
    """A whole OpenAI stream: role chunk, text deltas, finish chunk, then usage on a choices=[] chunk."""
    return [
        event({"role": "assistant", "content": ""}),
        *(event({"content": text}) for text in texts),
        event(finish=finish),
        event(choices=[], usage=USAGE),
    ]


def tool(
    index: int, *, call_id: str | None = None, name: str | None = None, arguments: str = ""
) -> dict[str, Any]:
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        fragment |= {"id": call_id, "type": "function"}
        fragment["function"]["name"] = name
    return fragment


CASE = ProviderCase(
    id="openai_chat",
    provider="openai",
    model="gpt-4o-mini",
    endpoint_name="chat",
    path="/v1",
    key_variables=("OPENAI_API_KEY",),
    base_url_variable="OPENAI_BASE_URL",
    text_body=lambda *texts: sse(text_stream(*texts)),
    cut_body=lambda *texts: sse([event({"content": text}) for text in texts], done=False),
    cut_message="without a finish reason",
    error_body=openai_error_body,
    transcript=chat_transcript,
    errors=SdkErrors(
        authentication=openai.AuthenticationError,
        rate_limit=openai.RateLimitError,
        server=openai.InternalServerError,
        connection=openai.APIConnectionError,
        dropped=openai.APIConnectionError,
    ),
)


# -- streaming ---------------------------------------------------------------------------------------


async def test_text_streams_delta_by_delta_then_one_usage_and_one_finish(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=sse(text_stream("Hel", "lo", "!"))))
    chunks, response = await run(make())

    assert [(c.type, c.data) for c in chunks] == [
        ("text", "Hel"),
        ("text", "lo"),
        ("text", "!"),
        ("usage", ""),
        ("finish", ""),
    ]
    assert response.text == "Hello!"
    assert response.usage == EXPECTED_USAGE
    assert response.finish_reason == "stop"
    assert not response.incomplete
    assert response.model == MODEL
    finish = chunks[-1]
    assert finish.metadata == {
        "provider": "openai",
        "model": MODEL,
        "response_id": "chatcmpl-1",
        "finish_reason": "stop",
    }
    assert chunks[0].metadata["response_id"] == "chatcmpl-1"
    assert isinstance(chunks[0].raw_response, openai.types.chat.ChatCompletionChunk)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(text_stream("ok"), EXPECTED_USAGE, id="separate-chunk-openai"),
        pytest.param(
            [
                event({"content": "ok"}),
                event(
                    finish="stop",
                    usage={
                        "prompt_tokens": 6,
                        "completion_tokens": 212,
                        "total_tokens": 218,
                        "completion_tokens_details": {"reasoning_tokens": 198},
                        "prompt_cache_hit_tokens": 4,
                        "prompt_cache_miss_tokens": 2,
                    },
                ),
            ],
            Usage(input_tokens=6, output_tokens=212, total_tokens=218, reasoning_tokens=198, cached_tokens=4),
            id="on-finish-chunk-deepseek",
        ),
        pytest.param([event({"content": "ok"}), event(finish="stop")], None, id="not-reported"),
    ],
)
async def test_usage_variants_end_in_at_most_one_usage_chunk_before_finish(
    server: LoopbackServer,
    make: Callable[..., iModel],
    events: list[dict[str, Any]],
    expected: Usage | None,
) -> None:
    server.add(Reply(pieces=sse(events)))
    chunks, response = await run(make())

    kinds = [c.type for c in chunks]
    assert kinds == ["text", "usage", "finish"] if expected else ["text", "finish"]
    assert response.usage == expected
    assert response.text == "ok"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_reasoning_deltas_from_compatible_servers(
    server: LoopbackServer, make: Callable[..., iModel], field: str
) -> None:
    server.add(
        Reply(
            pieces=sse(
                [
                    event({"role": "assistant", "content": None, field: ""}),
                    event({field: "Think"}),
                    event({field: "ing."}),
                    event({"content": "Answer", field: None}),
                    event(finish="stop"),
                ]
            )
        )
    )
    chunks, response = await run(make())

    assert [(c.type, c.data) for c in chunks[:3]] == [
        ("reasoning", "Think"),
        ("reasoning", "ing."),
        ("text", "Answer"),
    ]
    assert response.reasoning == "Thinking."
    assert response.text == "Answer"


async def test_reasoning_sent_under_both_names_is_not_doubled(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    # vLLM has sent the same text as `reasoning` and `reasoning_content`
    server.add(
        Reply(pieces=sse([event({"reasoning": "Hm.", "reasoning_content": "Hm."}), event(finish="stop")]))
    )
    _, response = await run(make())
    assert response.reasoning == "Hm."


async def test_parallel_tool_calls_carry_id_and_name_on_every_fragment(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(
        Reply(
            pieces=sse(
                [
                    event(
                        {"role": "assistant", "tool_calls": [tool(0, call_id="call_a", name="get_weather")]}
                    ),
                    event({"tool_calls": [tool(0, arguments='{"city":')]}),
                    event({"tool_calls": [tool(1, call_id="call_b", name="get_time")]}),
                    event({"tool_calls": [tool(0, arguments=' "Paris"}')]}),
                    event({"tool_calls": [tool(1, arguments='{"tz": "CET"}')]}),
                    event(finish="tool_calls"),
                    event(choices=[], usage=USAGE),
                ]
            )
        )
    )
    chunks, response = await run(make())

    assert [(c.index, c.tool_call_id, c.tool_name, c.data) for c in chunks if c.type == "tool_call"] == [
        (0, "call_a", "get_weather", ""),
        (0, "call_a", "get_weather", '{"city":'),
        (1, "call_b", "get_time", ""),
        (0, "call_a", "get_weather", ' "Paris"}'),
        (1, "call_b", "get_time", '{"tz": "CET"}'),
    ]
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_time", {"tz": "CET"}),
    ]
    assert response.finish_reason == "tool_calls"
    assert chunks[-1].metadata["finish_reason"] == "tool_calls"


async def test_refusal_streams_as_refusal_and_finishes_as_refusal(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(
        Reply(
            pieces=sse(
                [
                    event({"role": "assistant", "content": None, "refusal": ""}),
                    event({"refusal": "I can't"}),
                    event({"refusal": " help with that."}),
                    event(finish="stop"),
                    event(choices=[], usage=USAGE),
                ]
            )
        )
    )
    chunks, response = await run(make())

    assert [c.type for c in chunks] == ["refusal", "refusal", "usage", "finish"]
    assert response.refusal == "I can't help with that."
    assert response.text == ""
    assert response.finish_reason == "refusal"
    assert chunks[-1].metadata["finish_reason"] == "stop"  # what OpenAI sent


@pytest.mark.parametrize(
    ("native", "normalized"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("function_call", "tool_calls"),
    ],
)
async def test_finish_reasons_are_normalized_and_native_value_kept(
    server: LoopbackServer, make: Callable[..., iModel], native: str, normalized: str
) -> None:
    server.add(Reply(pieces=sse(text_stream("x", finish=native))))
    chunks, response = await run(make())

    assert response.finish_reason == normalized
    assert chunks[-1].type == "finish"
    assert chunks[-1].finish_reason == normalized
    assert chunks[-1].metadata["finish_reason"] == native


async def test_repeated_finish_reason_still_ends_in_exactly_one_finish(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    # OpenRouter repeats finish_reason on the following chunks, usage on the last one
    server.add(
        Reply(
            pieces=sse(
                [
                    event({"content": "cut"}, finish="length"),
                    event({"content": ""}, finish="length"),
                    event({"content": ""}, finish="length", usage=USAGE),
                ]
            )
        )
    )
    chunks, response = await run(make())

    assert [c.type for c in chunks] == ["text", "usage", "finish"]
    assert response.finish_reason == "length"
    assert response.usage == EXPECTED_USAGE


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        ({"code": 400, "message": "Token limit reached"}, False),  # OpenRouter
        ({"message": "The server had an error", "type": "server_error", "code": None}, True),
    ],
)
async def test_error_chunk_mid_stream_raises_stream_interrupted_with_the_text_so_far(
    server: LoopbackServer, make: Callable[..., iModel], error: dict[str, Any], retryable: bool
) -> None:
    server.add(
        Reply(pieces=sse([event({"content": "Partial "}), event({"content": "answer"}), {"error": error}]))
    )
    model = make()
    seen: list[str] = []

    with pytest.raises(StreamInterrupted) as caught:
        async for chunk in model.invoke(HI):
            seen.append(chunk.data)

    assert seen == ["Partial ", "answer"]
    assert error["message"] in str(caught.value)
    assert caught.value.retryable is retryable
    assert isinstance(caught.value.__cause__, openai.APIError)
    partial = caught.value.response
    assert partial is not None
    assert partial.text == "Partial answer"
    assert partial.incomplete
    assert partial.finish_reason == "error"


# -- what the server receives ---------------------------------------------------------------------


class GetWeather(BaseModel):
    """Current weather of a city."""

    city: str


async def test_request_carries_converted_messages_and_mapped_parameters(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=sse(text_stream("ok"))))
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
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
    model = make(temperature=0.2, seed=7)

    await run(
        model,
        messages,
        max_tokens=50,
        stop="END",
        top_p=0.9,
        tools=[GetWeather],
        tool_choice="GetWeather",
        frequency_penalty=0.5,
        top_k=40,
    )

    received = server.requests[0]
    assert received.path == "/v1/chat/completions"
    body = received.json
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "GetWeather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C, sunny"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert body["model"] == "gpt-4o-mini"
    assert body["temperature"] == 0.2
    assert body["seed"] == 7
    assert body["top_p"] == 0.9
    assert body["stop"] == "END"
    # a compatible server (base_url given) gets the name every such server knows
    assert body["max_tokens"] == 50
    assert "max_completion_tokens" not in body
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "GetWeather",
                "description": "Current weather of a city.",
                "parameters": GetWeather.model_json_schema(),
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "GetWeather"}}
    assert body["frequency_penalty"] == 0.5  # an SDK parameter lionflow does not name
    assert body["top_k"] == 40  # unknown to the SDK: passed through in the body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_openai_form_tools_are_sent_as_given_and_stop_lists_kept(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=sse(text_stream("ok"))))
    strict_tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
            "strict": True,
        },
    }
    await run(make(), tools=[strict_tool], tool_choice="required", stop=["\n\n", "END"])

    body = server.requests[0].json
    assert body["tools"] == [strict_tool]
    assert body["tool_choice"] == "required"
    assert body["stop"] == ["\n\n", "END"]


# -- structured output -----------------------------------------------------------------------------


async def test_a_model_class_is_sent_as_json_schema_strict_only_when_its_schema_allows(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(*(Reply(pieces=sse(text_stream(TRIP_JSON))) for _ in range(2)))
    model = make()
    await run(model, response_format=Trip)
    with pytest.raises(pydantic.ValidationError):  # the reply is a Trip, not a Note
        await run(model, response_format=Note)

    assert server.requests[0].json["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Trip", "schema": Trip.model_json_schema(), "strict": True},
    }
    # a default makes a field optional, which strict mode refuses: the schema is sent non-strict
    assert server.requests[1].json["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Note", "schema": Note.model_json_schema(), "strict": False},
    }


async def test_a_json_schema_dict_is_wrapped_and_a_response_format_dict_sent_as_given(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(*(Reply(pieces=sse(text_stream('{"x": 1, "y": 2}'))) for _ in range(2)))
    given = {"type": "json_schema", "json_schema": {"name": "P", "schema": POINT_SCHEMA}}
    model = make()
    first = await model.invoke(HI, response_format=POINT_SCHEMA)
    await model.invoke(HI, response_format=given)

    assert server.requests[0].json["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Point", "schema": POINT_SCHEMA, "strict": True},
    }
    assert server.requests[1].json["response_format"] == given
    assert first.text == '{"x": 1, "y": 2}'


class Open(BaseModel):  # extra fields allowed: additionalProperties is not false
    city: str


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    maybe: str | None  # nullable but required: strict mode takes it
    inner: Open  # a nested model that is not closed


class Counts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    counts: dict[str, int]  # an open mapping: strict mode cannot take it


@pytest.mark.parametrize(
    ("schema", "strict"),
    [
        (Trip.model_json_schema(), True),  # nested models in $defs, all closed
        (Note.model_json_schema(), False),  # a default: not every property required
        (Closed.model_json_schema(), False),  # the nested $defs model is open
        (Counts.model_json_schema(), False),
        (POINT_SCHEMA, True),
        (POINT_SCHEMA | {"oneOf": [{"required": ["x"]}]}, False),  # a keyword strict mode refuses
        ({"type": "array", "items": POINT_SCHEMA}, False),  # the root must be an object
    ],
)
def test_strict_is_asked_for_only_when_the_schema_meets_strict_modes_rules(
    schema: dict[str, Any], strict: bool
) -> None:
    assert strict_ready(schema) is strict
    assert chat_response_format(schema)["json_schema"]["strict"] is strict


async def test_max_tokens_goes_to_openai_itself_as_max_completion_tokens() -> None:
    # OpenAI's reasoning models reject max_tokens; no request is sent here.
    model = iModel(provider="openai", model="o4-mini", api_key="sk-test")
    try:
        adapter = model.adapter
        assert isinstance(adapter, OpenAIChatProvider)
        arguments = request_arguments(model.request(HI, max_tokens=64), server=adapter.server)
        assert arguments["max_completion_tokens"] == 64
        assert "max_tokens" not in arguments
    finally:
        await model.aclose()


async def test_client_options_reach_the_server(server: LoopbackServer, make: Callable[..., iModel]) -> None:
    server.add(Reply(pieces=sse(text_stream("ok"))))
    await run(make(default_headers={"X-Title": "lionflow-tests"}, organization="org-123"))

    headers = server.requests[0].headers
    assert headers["x-title"] == "lionflow-tests"
    assert headers["openai-organization"] == "org-123"
    assert headers["authorization"] == "Bearer test"


async def test_an_unsupported_content_part_is_refused_before_any_request(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(ConfigurationError, match="image_url"):
        await make().invoke([{"role": "user", "content": [image]}])
    assert server.requests == []


# -- non-streaming ----------------------------------------------------------------------------------


async def test_non_streaming_call_gives_the_same_response_as_streaming(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    completion = {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
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
                        }
                    ],
                },
            }
        ],
        "usage": USAGE,
    }
    streamed = [
        event({"reasoning_content": "Need the weather."}),
        event({"content": "Checking."}),
        event({"tool_calls": [tool(0, call_id="call_1", name="GetWeather", arguments='{"city": "Oslo"}')]}),
        event(finish="tool_calls"),
        event(choices=[], usage=USAGE),
    ]
    server.add(Reply.json(200, completion), Reply(pieces=sse(streamed)))

    chunks, whole = await run(make(stream=False))
    _, stream = await run(make())

    assert [c.type for c in chunks] == ["reasoning", "text", "tool_call", "usage", "finish"]
    fields = ("text", "reasoning", "refusal", "tool_calls", "usage", "finish_reason", "model", "incomplete")
    assert whole.model_dump(include=set(fields)) == stream.model_dump(include=set(fields))
    assert whole.tool_calls[0].arguments == {"city": "Oslo"}
    assert chunks[-1].metadata["response_id"] == "chatcmpl-9"
    body = server.requests[0].json
    assert body.get("stream") in (False, None)
    assert "stream_options" not in body


# -- endpoints --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint", [None, "chat", "chat/completions", "/chat/completions", "chat_completions"]
)
def test_chat_endpoints_select_this_adapter(endpoint: str | None) -> None:
    assert OpenAIChatProvider.for_endpoint(endpoint) is OpenAIChatProvider


def test_responses_endpoint_selects_the_responses_adapter() -> None:
    assert OpenAIChatProvider.for_endpoint("responses").__name__ == "OpenAIResponsesProvider"


def test_unknown_endpoint_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"'chat'.*'responses'"):
        iModel(provider="openai", model="gpt-4o-mini", api_key="test", endpoint="completions")
