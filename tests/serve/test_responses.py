"""``/v1/responses``, checked with the official openai client (async and sync, ``responses.create``
and the ``responses.stream()`` helper) and with lionflow's own Responses adapter pointed at the
server: what they read equals what the model behind the server answers when called directly."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import httpx
import openai
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from lionflow import Response, iModel
from lionflow.serve import create_app
from lionflow.testing import ScriptedModel, ScriptedReply
from tests.loopback import LoopbackServer, Reply, sse

pytestmark = pytest.mark.anyio

Serve = Callable[[FastAPI], str]
REPLY = "Hello there, this streams in pieces."
CALLS = [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_w"}]
HI = [{"role": "user", "content": "hi"}]


def scripted(**options: Any) -> ScriptedModel:
    options.setdefault("responses", [REPLY] * 4)
    return ScriptedModel(name="echo", chunk_size=5, **options)


async def direct(**options: Any) -> Response:
    """What the model behind the server answers when called directly."""
    return await scripted(**options).invoke(HI)


def client_of(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0)


async def test_a_streamed_response_reads_as_the_model_answered(serve: Serve) -> None:
    async with client_of(serve(create_app([scripted()]))) as client:
        stream = await client.responses.create(model="echo", input="hi", stream=True)
        events = [event async for event in stream]

    expected = await direct()
    kinds = [event.type for event in events]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == expected.text
    assert len(deltas) == len(REPLY) // 5 + 1
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == expected.text
    assert final.response.status == "completed"
    assert final.response.usage is not None
    assert expected.usage is not None
    usage = final.response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (
        expected.usage.input_tokens,
        expected.usage.output_tokens,
        expected.usage.total_tokens,
    )
    assert usage.input_tokens_details.cached_tokens == expected.usage.cached_tokens
    assert len({event.response.id for event in events if hasattr(event, "response")}) == 1


async def test_a_whole_response_reads_as_the_model_answered(serve: Serve) -> None:
    async with client_of(serve(create_app([scripted(reasoning="Think first.")]))) as client:
        response = await client.responses.create(model="echo", input="hi")

    expected = await direct(reasoning="Think first.")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == expected.text
    reasoning, message = response.output
    assert reasoning.type == "reasoning"
    assert [part.text for part in reasoning.summary] == [expected.reasoning]
    assert message.type == "message"
    assert response.usage is not None
    assert expected.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == expected.usage.reasoning_tokens > 0
    assert response.usage.total_tokens == expected.usage.total_tokens


async def test_the_stream_helper_gives_the_final_response(serve: Serve) -> None:
    client = client_of(serve(create_app([scripted(reasoning="Think first.")])))
    async with client, client.responses.stream(model="echo", input="hi") as stream:
        summary = "".join(
            [e.delta async for e in stream if e.type == "response.reasoning_summary_text.delta"]
        )
        final = await stream.get_final_response()

    expected = await direct(reasoning="Think first.")
    assert final.output_text == expected.text
    assert summary == expected.reasoning
    assert [item.type for item in final.output] == ["reasoning", "message"]


async def test_the_sync_client_reads_the_same_stream(serve: Serve) -> None:
    base_url = serve(create_app([scripted()])) + "/v1"

    def read() -> tuple[str, str]:
        with openai.OpenAI(base_url=base_url, api_key="unused") as client:
            stream = client.responses.create(model="echo", input="hi", stream=True)
            text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            with client.responses.stream(model="echo", input="hi") as helper:
                return text, helper.get_final_response().output_text

    expected = (await direct()).text
    assert await anyio.to_thread.run_sync(read) == (expected, expected)


@pytest.mark.parametrize("streamed", [False, True])
async def test_function_calls_arrive_as_function_call_items(serve: Serve, streamed: bool) -> None:
    model = scripted(responses=["Let me look."], tool_calls=CALLS)
    response: openai.types.responses.Response
    async with client_of(serve(create_app([model]))) as client:
        if streamed:
            async with client.responses.stream(model="echo", input="weather?") as stream:
                arguments = "".join(
                    [e.delta async for e in stream if e.type == "response.function_call_arguments.delta"]
                )
                response = await stream.get_final_response()
            assert json.loads(arguments) == {"city": "Paris"}
        else:
            response = await client.responses.create(model="echo", input="weather?")

    message, call = response.output
    assert message.type == "message"
    assert response.output_text == "Let me look."
    assert call.type == "function_call"
    assert (call.call_id, call.name) == ("call_w", "get_weather")
    assert json.loads(call.arguments) == {"city": "Paris"}


async def test_the_request_reaches_the_model_as_chat_messages_and_parameters(serve: Serve) -> None:
    model = scripted()
    weather = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    # (as JSON the client sends: its typed parameters would only add casts)
    request: dict[str, Any] = {
        "model": "echo",
        "instructions": "Answer briefly.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather in Paris?"}]},
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": weather, "strict": False}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "max_output_tokens": 50,
        "temperature": 0.5,
    }
    async with client_of(serve(create_app([model]))) as client:
        await client.responses.create(**request)

    (sent,) = model.requests
    assert sent.messages == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    assert sent.params["max_tokens"] == 50
    assert sent.params["temperature"] == 0.5
    (tool,) = sent.params["tools"]
    assert tool["function"]["name"] == "get_weather"
    assert tool["function"]["parameters"] == weather
    assert sent.params["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    country: str


async def test_structured_output_via_text_format(serve: Serve) -> None:
    answer = '{"name": "Paris", "country": "France"}'
    model = scripted(responses=[answer, answer])
    async with client_of(serve(create_app([model]))) as client:
        parsed = await client.responses.parse(model="echo", input="a city", text_format=City)
        async with client.responses.stream(model="echo", input="a city", text_format=City) as stream:
            streamed = await stream.get_final_response()

    assert parsed.output_parsed == streamed.output_parsed == City(name="Paris", country="France")
    sent = model.requests[0].params["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "City"
    assert sent["json_schema"]["schema"]["properties"].keys() == {"name", "country"}


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_answer_cut_by_the_limit_is_incomplete(serve: Serve, streamed: bool) -> None:
    model = scripted(responses=[ScriptedReply(text="Cut sh", finish_reason="length")])
    async with client_of(serve(create_app([model]))) as client:
        if streamed:
            stream = await client.responses.create(model="echo", input="hi", stream=True)
            events = [event async for event in stream]
            assert events[-1].type == "response.incomplete"
            response = events[-1].response
        else:
            response = await client.responses.create(model="echo", input="hi", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "Cut sh"


async def test_a_refusal_is_a_refusal_content_part(serve: Serve, server: LoopbackServer) -> None:
    def event(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": "u", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}

    server.add(
        Reply(pieces=sse([event({"refusal": "I can't "}), event({"refusal": "help."}), event({}, "stop")]))
    )
    upstream = iModel(provider="openai", model="m", name="up", base_url=server.url + "/v1", api_key="k")
    client = client_of(serve(create_app([upstream])))
    async with client, client.responses.stream(model="up", input="something bad") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.refusal.delta"]
        final = await stream.get_final_response()

    assert "".join(deltas) == "I can't help."
    (message,) = final.output
    assert message.type == "message"
    (part,) = message.content
    assert part.type == "refusal"
    assert part.refusal == "I can't help."


async def test_lionflows_responses_adapter_gets_the_same_response_through_the_server(serve: Serve) -> None:
    options: dict[str, Any] = {"responses": ["Sure.", "Sure."], "tool_calls": CALLS, "reasoning": "Hmm, ok."}
    base_url = serve(create_app([scripted(**options)])) + "/v1"
    relayed = iModel(
        provider="openai", endpoint="responses", model="echo", base_url=base_url, api_key="unused"
    )
    async with relayed:
        through_server = await relayed.invoke(HI)

    expected = await direct(**options)
    assert through_server.text == expected.text
    assert through_server.reasoning == expected.reasoning
    assert [(c.id, c.name, c.arguments) for c in through_server.tool_calls] == [
        (c.id, c.name, c.arguments) for c in expected.tool_calls
    ]
    assert through_server.finish_reason == expected.finish_reason == "tool_calls"
    assert through_server.usage == expected.usage


# -- errors -------------------------------------------------------------------------------------------


async def test_bad_requests_are_4xx_naming_the_field(serve: Serve) -> None:
    async with client_of(serve(create_app([scripted()]))) as client:
        with pytest.raises(openai.NotFoundError, match="'nope' does not exist"):
            await client.responses.create(model="nope", input="hi")
        # This server has no store: nothing to continue, and nowhere to keep a background response.
        with pytest.raises(openai.NotFoundError, match="stores no responses") as missing:
            await client.responses.create(model="echo", input="hi", previous_response_id="resp_1")
        assert missing.value.param == "previous_response_id"
        with pytest.raises(openai.BadRequestError, match="stores no responses") as caught:
            await client.responses.create(model="echo", input="hi", background=True)
        assert caught.value.param == "background"
        with pytest.raises(openai.BadRequestError, match="Conversations API") as caught:
            await client.responses.create(model="echo", input="hi", conversation="conv_1")
        assert caught.value.param == "conversation"
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="echo", input="hi", temperature=-1)
        assert caught.value.param == "temperature"
        with pytest.raises(openai.BadRequestError) as caught:
            image = {"type": "input_image", "image_url": "https://example.invalid/a.png", "detail": "auto"}
            content: Any = [{"role": "user", "content": [image]}]
            await client.responses.create(model="echo", input=content, stream=True)
        assert caught.value.param == "input.0.content.0"
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="echo", input="hi", tools=[{"type": "web_search"}])
        assert caught.value.param == "tools.0.type"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"model": "echo"}',
        b'{"model": "echo", "input": 3}',
        b'{"model": "echo", "input": [3]}',
        b'{"model": "echo", "input": [{"type": "function_call"}]}',
        b'{"model": "echo", "input": "hi", "text": {"format": {"type": "json_schema"}}}',
        b'{"model": "echo", "input": "hi", "tool_choice": {"type": "mcp"}}',
        b'{"model": "echo", "input": [{"role": "system", "content": "only this"}], "stream": true}',
    ],
)
async def test_malformed_bodies_are_400s_never_500s(serve: Serve, body: bytes) -> None:
    base_url = serve(create_app([scripted()]))
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            base_url + "/v1/responses", content=body, headers={"content-type": "application/json"}
        )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["type"] == "invalid_request_error"


async def test_an_error_mid_stream_is_an_error_event_then_the_end(serve: Serve) -> None:
    base_url = serve(create_app([scripted(fail_after=3)]))  # StreamInterrupted after 3 chunks
    texts: list[str] = []
    async with client_of(base_url) as client:
        stream = await client.responses.create(model="echo", input="hi", stream=True)
        with pytest.raises(openai.APIError, match="scripted failure"):
            async for event in stream:
                if event.type == "response.output_text.delta":
                    texts.append(event.delta)
        with pytest.raises(openai.APIError, match="scripted failure"):
            async with client.responses.stream(model="echo", input="hi") as helper:
                await helper.get_final_response()
    assert "".join(texts) == REPLY[:15]

    body = {"model": "echo", "input": "hi", "stream": True}
    async with httpx.AsyncClient() as http:
        raw = (await http.post(base_url + "/v1/responses", json=body)).text
    # The last event's fields (an ``id:`` line may come first: the server's streams are resumable).
    fields = dict(line.split(": ", 1) for line in raw.strip().split("\n\n")[-1].split("\n"))
    assert fields["event"] == "error"
    error = json.loads(fields["data"])
    assert error["type"] == "error"
    assert "scripted failure" in error["message"]
    assert error["code"] == "upstream_error"
    assert error["sequence_number"] == raw.count("event: ") - 1


async def test_a_client_that_hangs_up_closes_the_upstream_stream(
    serve: Serve, server: LoopbackServer
) -> None:
    def event(text: str) -> dict[str, Any]:
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        return {"id": "u", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}

    server.add(Reply(pieces=sse([event(f"w{n} ") for n in range(50)]), delay=0.05))
    upstream = iModel(provider="openai", model="m", name="up", base_url=server.url + "/v1", api_key="k")
    client = client_of(serve(create_app([upstream])))
    stream = await client.responses.create(model="up", input="hi", stream=True)
    deltas = 0
    async for item in stream:
        deltas += item.type == "response.output_text.delta"
        if deltas == 2:
            break
    await stream.close()
    await client.close()

    # The server noticed and cancelled its call: the upstream sees its stream closed early.
    (request,) = server.requests
    assert await anyio.to_thread.run_sync(request.disconnected.wait, 5)
    assert not request.completed.is_set()
