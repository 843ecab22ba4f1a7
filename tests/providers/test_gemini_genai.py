"""The Gemini adapter, through the real `google-genai` SDK against a loopback HTTP server."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import BaseModel

from lionflow import (
    AuthenticationError,
    ConfigurationError,
    ProviderTimeout,
    StreamInterrupted,
    Usage,
    iModel,
)
from tests.loopback import LoopbackServer, Reply, sse
from tests.providers.helpers import HI, Entry, ProviderCase, SdkErrors, run, sdk_timeout
from tests.providers.structured import (
    POINT_SCHEMA,
    TRIP_JSON,
    Trip,
)

pytestmark = pytest.mark.anyio

MODEL = "gemini-2.5-flash"
STREAM_PATH = f"/v1beta/models/{MODEL}:streamGenerateContent"


# -- wire bodies -----------------------------------------------------------------------------------


def event(
    *parts: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """One streamed GenerateContentResponse, as the Gemini API sends it."""
    candidate: dict[str, Any] = {"content": {"parts": list(parts), "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    payload: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "resp-42",
    }
    if usage is not None:
        payload["usageMetadata"] = usage
    return payload


def body(*events: dict[str, Any]) -> list[bytes]:
    # Gemini separates events with CRLF CRLF and sends no [DONE] marker.
    return sse(list(events), done=False, separator="\r\n\r\n")


def text(value: str) -> dict[str, Any]:
    return {"text": value}


def thought(value: str) -> dict[str, Any]:
    return {"text": value, "thought": True}


def call(name: str, args: dict[str, Any], call_id: str | None = None, **extra: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "args": args}
    if call_id is not None:
        function["id"] = call_id
    return {"functionCall": function, **extra}


USAGE = {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13}


def wire(obj: dict[str, Any], name: str) -> Any:
    """Field `name` (camelCase) of a request object. The SDK writes the fields of some nested
    objects it passes through (thinking config, function declarations) in snake_case, which
    Google's JSON parsers accept as well (proto3 JSON): either spelling counts."""
    snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)
    return obj[name] if name in obj else obj[snake]


def error_body(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


_STATUS_NAMES = {401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}


def _transcript(body: dict[str, Any]) -> list[Entry]:
    entries: list[Entry] = []
    if "systemInstruction" in body:
        entries.append(("system", "".join(part["text"] for part in body["systemInstruction"]["parts"])))
    for content in body["contents"]:
        role = "assistant" if content["role"] == "model" else "user"
        for part in content["parts"]:
            if "text" in part:
                entries.append((role, part["text"]))
            elif "functionCall" in part:
                call = part["functionCall"]
                entries.append(("call", call.get("id"), call["name"], call.get("args", {})))
            else:
                result = part["functionResponse"]
                response = result["response"]
                output = response["result"] if set(response) == {"result"} else json.dumps(response)
                entries.append(("result", result.get("id"), output))
    return entries


CASE = ProviderCase(
    id="gemini",
    provider="gemini",
    model=MODEL,
    endpoint_name="generate_content",
    key_variables=("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    base_url_variable="GOOGLE_GEMINI_BASE_URL",
    key_header="x-goog-api-key",
    key_prefix="",
    text_body=lambda *texts: body(*[event(text(t)) for t in texts], event(finish="STOP", usage=USAGE)),
    cut_body=lambda *texts: body(*[event(text(t)) for t in texts]),
    cut_message="finishReason",
    error_body=lambda code, message: error_body(code, _STATUS_NAMES.get(code, "UNAVAILABLE"), message),
    transcript=_transcript,
    errors=SdkErrors(
        authentication=genai_errors.ClientError,
        rate_limit=genai_errors.ClientError,
        server=genai_errors.ServerError,
        connection=httpx2.ConnectError,
        dropped=httpx2.RemoteProtocolError,
    ),
)


# -- streaming -------------------------------------------------------------------------------------


async def test_text_streams_in_order_with_metadata(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=body(event(text("Hel")), event(text("lo!")), event(finish="STOP", usage=USAGE))))
    model = make()

    chunks, _ = await run(model)

    assert [(c.type, c.data) for c in chunks[:2]] == [("text", "Hel"), ("text", "lo!")]
    assert chunks[0].metadata == {
        "provider": "gemini",
        "model": "gemini-2.5-flash-001",
        "response_id": "resp-42",
    }
    assert isinstance(chunks[0].raw_response, types.GenerateContentResponse)
    assert [c.type for c in chunks[2:]] == ["usage", "finish"]
    received = server.requests[0]
    assert received.method == "POST"
    assert received.path == STREAM_PATH
    assert received.query == {"alt": ["sse"]}
    assert received.headers["x-goog-api-key"] == "test"
    assert received.json["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


async def test_thought_parts_stream_as_reasoning(server: LoopbackServer, make: Callable[..., iModel]) -> None:
    server.add(
        Reply(
            pieces=body(
                event(thought("Let me think. ")),
                event(thought("Done."), text("The answer")),
                event(text(" is 4."), finish="STOP"),
            )
        )
    )
    model = make()

    chunks, _ = await run(model)

    assert [(c.type, c.data) for c in chunks if c.is_content] == [
        ("reasoning", "Let me think. "),
        ("reasoning", "Done."),
        ("text", "The answer"),
        ("text", " is 4."),
    ]


async def test_reasoning_and_text_assemble_into_the_response(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=body(event(thought("Hmm.")), event(text("Yes."), finish="STOP"))))
    model = make()

    response = await model.invoke(messages=HI)

    assert response.reasoning == "Hmm."
    assert response.text == "Yes."
    assert response.finish_reason == "stop"
    assert response.model == "gemini-2.5-flash-001"  # as Gemini reports it (modelVersion)
    assert response.metadata["response_id"] == "resp-42"


async def test_parallel_function_calls_each_get_an_id_a_name_and_an_index(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    signature = base64.b64encode(b"opaque-signature").decode()
    server.add(
        Reply(
            pieces=body(
                event(
                    call("get_weather", {"city": "Paris"}, thoughtSignature=signature),
                    call("get_weather", {"city": "Oslo"}, call_id="fc-native-7"),
                ),
                event(call("get_time", {"zone": "CET"}), finish="STOP", usage=USAGE),
            )
        )
    )
    model = make()

    chunks, _ = await run(model)
    calls = [c for c in chunks if c.type == "tool_call"]

    assert [(c.index, c.tool_call_id, c.tool_name) for c in calls] == [
        (0, "call_0", "get_weather"),
        (1, "fc-native-7", "get_weather"),
        (2, "call_2", "get_time"),
    ]
    assert calls[0].metadata["thought_signature"] == signature
    assert "thought_signature" not in calls[1].metadata
    assert chunks[-1].finish_reason == "tool_calls"
    assert chunks[-1].metadata["finishReason"] == "STOP"


async def test_function_call_arguments_are_parsed_into_the_response(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    args = {"city": "Zürich", "days": 3, "units": ["C"], "detail": {"hourly": True}}
    server.add(Reply(pieces=body(event(call("forecast", args), call("noop", {})), event(finish="STOP"))))
    model = make()

    response = await model.invoke(messages=HI)

    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("call_0", "forecast", args),
        ("call_1", "noop", {}),
    ]
    assert response.finish_reason == "tool_calls"


async def test_usage_is_the_last_running_total_and_comes_once_before_finish(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(
        Reply(
            pieces=body(
                event(text("a"), usage={"promptTokenCount": 15, "totalTokenCount": 15}),
                event(
                    text("b"), usage={"promptTokenCount": 15, "thoughtsTokenCount": 30, "totalTokenCount": 45}
                ),
                event(
                    text("c"),
                    finish="STOP",
                    usage={
                        "promptTokenCount": 12,
                        "candidatesTokenCount": 3,
                        "thoughtsTokenCount": 30,
                        "cachedContentTokenCount": 8,
                        "totalTokenCount": 45,
                    },
                ),
            )
        )
    )
    model = make()

    chunks, _ = await run(model)

    kinds = [c.type for c in chunks]
    assert kinds == ["text", "text", "text", "usage", "finish"]
    # output counts thoughts too: 3 candidate tokens + 30 thought tokens
    assert chunks[3].usage == Usage(
        input_tokens=12, output_tokens=33, total_tokens=45, reasoning_tokens=30, cached_tokens=8
    )


async def test_no_usage_metadata_means_no_usage_chunk(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=body(event(text("hi"), finish="STOP"))))
    model = make()

    call_ = model.invoke(messages=HI)
    chunks = [chunk async for chunk in call_]

    assert [c.type for c in chunks] == ["text", "finish"]
    assert call_.response is not None
    assert call_.response.usage is None


@pytest.mark.parametrize(
    ("native", "normalized"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
    ],
)
async def test_finish_reasons_are_normalized_and_the_native_value_kept(
    server: LoopbackServer, make: Callable[..., iModel], native: str, normalized: str
) -> None:
    server.add(Reply(pieces=body(event(text("partial")), event(finish=native, usage=USAGE))))
    model = make()

    chunks, _ = await run(model)

    finishes = [c for c in chunks if c.type == "finish"]
    assert len(finishes) == 1
    assert chunks[-1] is finishes[0]
    assert finishes[0].finish_reason == normalized
    assert finishes[0].metadata["finishReason"] == native
    assert [c.type for c in chunks].count("usage") == 1


async def test_a_blocked_prompt_finishes_with_content_filter(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "resp-blocked",
    }
    server.add(Reply(pieces=body(blocked)))
    model = make()

    response = await model.invoke(messages=HI)

    assert response.text == ""
    assert response.finish_reason == "content_filter"
    assert response.metadata["blockReason"] == "SAFETY"
    assert response.usage == Usage(input_tokens=7, total_tokens=7)
    assert not response.incomplete


# -- errors ----------------------------------------------------------------------------------------


async def test_an_error_payload_mid_stream_interrupts_with_the_text_so_far(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(
        Reply(
            pieces=[
                *body(event(text("Once upon")), event(text(" a time"))),
                *body(error_body(503, "UNAVAILABLE", "The model is overloaded.")),
            ]
        )
    )
    model = make()
    call_ = model.invoke(messages=HI)
    seen: list[str] = []

    with pytest.raises(StreamInterrupted) as caught:
        async for chunk in call_:
            seen.append(chunk.data)

    assert seen == ["Once upon", " a time"]
    assert caught.value.retryable
    assert "overloaded" in str(caught.value)
    assert isinstance(caught.value.__cause__, genai_errors.ServerError)
    assert caught.value.response is not None
    assert caught.value.response.text == "Once upon a time"
    assert caught.value.response.incomplete
    assert caught.value.response.finish_reason == "error"


async def test_an_invalid_request_error_mid_stream_is_not_retryable(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(
        Reply(pieces=[*body(event(text("x"))), *body(error_body(400, "INVALID_ARGUMENT", "bad part"))])
    )
    model = make()

    with pytest.raises(StreamInterrupted) as caught:
        await model.invoke(messages=HI)

    assert not caught.value.retryable
    assert isinstance(caught.value.__cause__, genai_errors.ClientError)
    assert caught.value.response is not None
    assert caught.value.response.text == "x"


# -- what the server received ----------------------------------------------------------------------


CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
    {"role": "user", "content": "Weather in Paris and Oslo?"},
    {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                "extra_content": {"google": {"thought_signature": base64.b64encode(b"sig-1").decode()}},
            },
            {
                "id": "fc-native-7",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Oslo"}},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_0", "content": "18 degrees"},
    {"role": "tool", "tool_call_id": "fc-native-7", "content": '{"temp": 9, "sky": "rain"}'},
    {"role": "user", "content": "And tomorrow?"},
]


async def test_messages_are_converted_to_gemini_contents(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=body(event(text("ok"), finish="STOP"))))
    model = make()

    await model.invoke(messages=CONVERSATION)

    sent = server.requests[0].json
    assert sent["systemInstruction"] == {
        "parts": [{"text": "Be brief.\n\nUse metric units."}],
        "role": "user",
    }
    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Oslo?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                # call_<n> ids are lionflow's own and stay here; Gemini's ids go back to it
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": base64.b64encode(b"sig-1").decode(),
                },
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}, "id": "fc-native-7"}},
            ],
        },
        {
            # the tool results and the next user message merge into one user turn
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": "18 degrees"}}},
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"temp": 9, "sky": "rain"},
                        "id": "fc-native-7",
                    }
                },
                {"text": "And tomorrow?"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("messages", "complaint"),
    [
        ([{"role": "tool", "tool_call_id": "nope", "content": "x"}], "tool_call_id"),
        ([{"role": "critic", "content": "x"}], "critic"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "image_url"),
        ([{"role": "system", "content": "Only a system prompt."}], "at least one"),
    ],
)
async def test_messages_gemini_cannot_take_raise_before_sending(
    server: LoopbackServer, make: Callable[..., iModel], messages: list[dict[str, Any]], complaint: str
) -> None:
    model = make()

    with pytest.raises(ConfigurationError, match=complaint):
        await model.invoke(messages=messages)

    assert server.requests == []


class Lookup(BaseModel):
    """Look a word up in the dictionary."""

    word: str


async def test_parameters_map_to_the_generation_config(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=body(event(text("ok"), finish="STOP"))))
    model = make(temperature=0.2, top_p=0.9, max_tokens=77, stop="END", seed=11)
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }

    await model.invoke(messages=HI, tools=[weather, Lookup], tool_choice="get_weather")

    sent = server.requests[0].json
    assert sent["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 77,
        "stopSequences": ["END"],
        "seed": 11,
    }
    declarations = sent["tools"][0]["functionDeclarations"]
    assert [(d["name"], d["description"]) for d in declarations] == [
        ("get_weather", "Current weather."),
        ("Lookup", "Look a word up in the dictionary."),
    ]
    # the JSON schema goes as is (not Gemini's Schema subset), so $defs and the like survive
    assert wire(declarations[0], "parametersJsonSchema") == weather["function"]["parameters"]  # type: ignore[index]
    assert wire(declarations[1], "parametersJsonSchema") == Lookup.model_json_schema()
    assert sent["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


@pytest.mark.parametrize(("choice", "mode"), [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")])
async def test_tool_choice_modes(
    server: LoopbackServer, make: Callable[..., iModel], choice: str, mode: str
) -> None:
    server.add(Reply(pieces=body(event(text("ok"), finish="STOP"))))
    model = make()

    await model.invoke(messages=HI, tools=[Lookup], tool_choice=choice, stop=["a", "b"])

    sent = server.requests[0].json
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": mode}}
    assert sent["generationConfig"]["stopSequences"] == ["a", "b"]


async def test_gemini_native_tools_pass_as_given(server: LoopbackServer, make: Callable[..., iModel]) -> None:
    server.add(Reply(pieces=body(event(text("ok"), finish="STOP"))))
    model = make()

    await model.invoke(messages=HI, tools=[Lookup, types.Tool(google_search=types.GoogleSearch())])

    tools = server.requests[0].json["tools"]  # (the SDK puts the native tool first)
    assert {"googleSearch": {}} in tools
    (functions,) = [tool for tool in tools if "functionDeclarations" in tool]
    assert [d["name"] for d in functions["functionDeclarations"]] == ["Lookup"]


async def test_api_version_and_default_headers_options(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=body(event(text("ok"), finish="STOP"))))
    model = make(api_version="v1alpha", default_headers={"x-team": "lions"})

    await model.invoke(messages=HI)

    assert server.requests[0].path == f"/v1alpha/models/{MODEL}:streamGenerateContent"
    assert server.requests[0].headers["x-team"] == "lions"
    assert "api_version" not in server.requests[0].json.get("generationConfig", {})


async def test_generate_content_config_fields_pass_through(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=body(event(text("ok"), finish="STOP"))))
    model = make(top_k=5)

    await model.invoke(messages=HI, thinking_config={"include_thoughts": True, "thinking_budget": 256})

    config = server.requests[0].json["generationConfig"]
    assert config["topK"] == 5
    thinking = config["thinkingConfig"]
    assert wire(thinking, "includeThoughts") is True
    assert wire(thinking, "thinkingBudget") == 256


async def test_an_unknown_parameter_is_a_configuration_error_naming_it(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    model = make()

    with pytest.raises(ConfigurationError, match="frobnicate"):
        await model.invoke(messages=HI, frobnicate=True)

    with pytest.raises(ConfigurationError, match="thinking_config"):
        await model.invoke(messages=HI, thinking_config={"no_such_knob": 1})

    assert server.requests == []


# -- structured output -----------------------------------------------------------------------------


def json_body(*deltas: str) -> list[bytes]:
    return body(*[event(text(d)) for d in deltas], event(finish="STOP", usage=USAGE))


async def test_a_model_class_is_asked_for_as_json_with_its_json_schema(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=json_body(TRIP_JSON)), Reply(pieces=json_body('{"x": 1, "y": 2}')))
    model = make()
    await model.invoke(HI, response_format=Trip, temperature=0)
    await model.invoke(HI, response_format=POINT_SCHEMA)

    config = server.requests[0].json["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    # the JSON schema goes as is (not Gemini's Schema subset): $defs and additionalProperties survive
    assert wire(config, "responseJsonSchema") == Trip.model_json_schema()
    assert "responseSchema" not in config
    assert config["temperature"] == 0
    second = server.requests[1].json["generationConfig"]
    assert wire(second, "responseJsonSchema") == POINT_SCHEMA


async def test_json_object_asks_for_json_without_a_schema(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=json_body('{"a": 1}')))
    response = await make().invoke(HI, response_format={"type": "json_object"})

    config = server.requests[0].json["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert "responseJsonSchema" not in config
    assert response.text == '{"a": 1}'


async def test_response_format_and_geminis_own_schema_together_are_refused(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        await make().invoke(HI, response_format=Trip, response_json_schema=POINT_SCHEMA)
    assert server.requests == []


async def test_with_automatic_continuation_asked_for_the_stream_still_streams_and_closes(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    # The SDK then sends the request from inside its own stream, not from the adapter's open().
    server.add(Reply(pieces=body(event(text("first")), event(text("late"), finish="STOP")), delay=[0, 5]))
    model = make(automatic_continuation=True)

    with anyio.fail_after(4):
        async with model.stream(HI) as call:
            async for chunk in call:
                assert chunk.data == "first"
                break

    assert await anyio.to_thread.run_sync(server.requests[-1].disconnected.wait, 2)
    server.add(Reply(pieces=CASE.text_body("whole")))
    assert (await model.invoke(HI)).text == "whole"


# -- non-streaming ---------------------------------------------------------------------------------


async def test_non_streaming_mode_gives_the_same_response(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    whole = {
        "candidates": [
            {
                "content": {
                    "parts": [thought("Plan first."), text("Here you go."), call("lookup", {"word": "lion"})],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 5,
            "candidatesTokenCount": 6,
            "thoughtsTokenCount": 2,
            "totalTokenCount": 13,
        },
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "resp-whole",
    }
    server.add(Reply.json(200, whole))
    model = make(stream=False)

    chunks, _ = await run(model)

    assert server.requests[0].path == f"/v1beta/models/{MODEL}:generateContent"
    assert [(c.type, c.data) for c in chunks if c.is_content] == [
        ("reasoning", "Plan first."),
        ("text", "Here you go."),
        ("tool_call", '{"word": "lion"}'),
    ]
    assert [c.type for c in chunks][-2:] == ["usage", "finish"]
    assert chunks[-2].usage == Usage(input_tokens=5, output_tokens=8, total_tokens=13, reasoning_tokens=2)
    assert chunks[-1].finish_reason == "tool_calls"
    assert chunks[-1].metadata["response_id"] == "resp-whole"


async def test_non_streaming_errors_map_the_same_way(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply.json(403, error_body(403, "PERMISSION_DENIED", "no access")))
    model = make(stream=False)

    with pytest.raises(AuthenticationError):
        await model.invoke(messages=HI)


async def test_a_non_streaming_timeout_after_the_headers_is_a_first_chunk_timeout(
    server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    # The answer began (status and headers arrived); the SDK's read timeout ran out waiting for the
    # body: the provider was reached, so this is not "connecting to the provider".
    whole = json.dumps({"candidates": [{"content": {"parts": [text("late")]}, "finishReason": "STOP"}]})
    server.add(Reply(pieces=[whole.encode()], headers={"content-type": "application/json"}, delay=5.0))

    with anyio.fail_after(4), pytest.raises(ProviderTimeout) as caught:
        await make(stream=False, max_retries=0).invoke(HI, **sdk_timeout(CASE, 0.3))

    assert caught.value.phase == "first_chunk"
    assert caught.value.seconds == 0.3
    assert await anyio.to_thread.run_sync(server.requests[-1].disconnected.wait, 2)


# -- credentials -----------------------------------------------------------------------------------


async def test_google_api_key_wins_over_gemini_api_key_as_in_the_sdk(
    server: LoopbackServer, make: Callable[..., iModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "google")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini")
    server.add(Reply(pieces=body(event(text("ok"), finish="STOP"))))
    await make(api_key=None).invoke(messages=HI)

    assert server.requests[0].headers["x-goog-api-key"] == "google"
