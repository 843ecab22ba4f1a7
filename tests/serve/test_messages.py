"""``/v1/messages``, checked with the official anthropic client (async and sync) and with lionflow's
own anthropic adapter pointed at the server: what they read equals what the model behind the server
answers when called directly."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import anyio
import anyio.to_thread
import httpx
import pytest
from anthropic.types import Message, MessageParam
from fastapi import FastAPI

from lionflow import Response, iModel
from lionflow.errors import RateLimitError
from lionflow.serve import create_app
from lionflow.testing import ScriptedModel, ScriptedReply
from tests.loopback import LoopbackServer, Reply, anthropic_sse

pytestmark = pytest.mark.anyio

Serve = Callable[[FastAPI], str]
HI: list[MessageParam] = [{"role": "user", "content": "hi"}]
REPLY = "Hello there, this streams in pieces."
CALLS = [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "toolu_w"}]
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def scripted(**options: Any) -> ScriptedModel:
    options.setdefault("responses", [REPLY] * 4)
    return ScriptedModel(name="echo", chunk_size=5, **options)


def blocks(message: Message) -> list[tuple[Any, ...]]:
    """The message's content blocks, as what a reader of each kind takes from it."""
    read: list[tuple[Any, ...]] = []
    for block in message.content:
        if block.type == "text":
            read.append(("text", block.text))
        elif block.type == "thinking":
            read.append(("thinking", block.thinking))
        elif block.type == "tool_use":
            read.append(("tool_use", block.id, block.name, block.input))
        else:
            read.append((block.type,))
    return read


def client(base_url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base_url, api_key="unused", max_retries=0)


async def direct(**options: Any) -> Response:
    """What the model behind the server answers when called directly."""
    return await scripted(**options).invoke([{"role": "user", "content": "hi"}])


async def test_a_whole_message_reads_as_the_model_answered(serve: Serve) -> None:
    async with client(serve(create_app([scripted()]))) as anth:
        message = await anth.messages.create(model="echo", messages=HI, max_tokens=100)

    expected = await direct()
    assert message.id.startswith("msg_")
    assert (message.type, message.role, message.model) == ("message", "assistant", "echo")
    assert [(block.type, getattr(block, "text", None)) for block in message.content] == [
        ("text", expected.text)
    ]
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert expected.usage is not None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        expected.usage.input_tokens,
        expected.usage.output_tokens,
    )


async def test_a_streamed_message_has_the_event_sequence_the_sdk_expects(serve: Serve) -> None:
    async with client(serve(create_app([scripted()]))) as anth:
        stream = await anth.messages.create(model="echo", messages=HI, max_tokens=100, stream=True)
        events = [event async for event in stream]

    expected = await direct()
    kinds = [event.type for event in events]
    deltas = len(REPLY) // 5 + 1
    assert kinds == (
        ["message_start", "content_block_start"]
        + ["content_block_delta"] * deltas
        + ["content_block_stop", "message_delta", "message_stop"]
    )
    start = events[0]
    assert start.type == "message_start"
    assert start.message.id.startswith("msg_")
    assert start.message.content == []
    assert start.message.stop_reason is None
    text = "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == expected.text
    assert {
        e.index
        for e in events
        if e.type in ("content_block_start", "content_block_delta", "content_block_stop")
    } == {0}
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert expected.usage is not None
    assert delta.usage.output_tokens == expected.usage.output_tokens
    assert delta.usage.input_tokens == expected.usage.input_tokens


async def test_the_stream_helper_assembles_the_final_message(serve: Serve) -> None:
    async with (
        client(serve(create_app([scripted()]))) as anth,
        anth.messages.stream(model="echo", messages=HI, max_tokens=100) as stream,
    ):
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()

    expected = await direct()
    assert "".join(pieces) == expected.text
    assert len(pieces) == len(REPLY) // 5 + 1
    assert blocks(final) == [("text", expected.text)]
    assert final.stop_reason == "end_turn"
    assert expected.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (
        expected.usage.input_tokens,
        expected.usage.output_tokens,
    )


@pytest.mark.parametrize("streamed", [False, True])
async def test_tool_use_reads_as_the_calls_the_model_made(serve: Serve, streamed: bool) -> None:
    model = scripted(responses=["Let me look."], tool_calls=CALLS)
    final: Message
    async with client(serve(create_app([model]))) as anth:
        if streamed:
            async with anth.messages.stream(
                model="echo", messages=HI, max_tokens=100, tools=[WEATHER_TOOL], tool_choice={"type": "auto"}
            ) as stream:
                final = await stream.get_final_message()
        else:
            final = await anth.messages.create(
                model="echo", messages=HI, max_tokens=100, tools=[WEATHER_TOOL], tool_choice={"type": "auto"}
            )

    assert blocks(final) == [
        ("text", "Let me look."),
        ("tool_use", "toolu_w", "get_weather", {"city": "Paris"}),
    ]
    assert final.stop_reason == "tool_use"
    # The model saw the tool in lionflow's form, and the choice.
    (request,) = model.adapter.requests
    (tool,) = request.params["tools"]
    assert tool["function"]["name"] == "get_weather"
    assert tool["function"]["parameters"] == WEATHER_TOOL["input_schema"]
    assert request.params["tool_choice"] == "auto"


@pytest.mark.parametrize("streamed", [False, True])
async def test_reasoning_reads_as_thinking(serve: Serve, streamed: bool) -> None:
    model = scripted(reasoning="First, think it through.")
    final: Message
    async with client(serve(create_app([model]))) as anth:
        if streamed:
            async with anth.messages.stream(model="echo", messages=HI, max_tokens=100) as stream:
                final = await stream.get_final_message()
        else:
            final = await anth.messages.create(model="echo", messages=HI, max_tokens=100)

    assert blocks(final) == [("thinking", "First, think it through."), ("text", REPLY)]
    assert final.usage.output_tokens_details is not None
    assert final.usage.output_tokens_details.thinking_tokens == 4


async def test_the_conversation_reaches_the_model_in_lionflows_form(serve: Serve) -> None:
    model = scripted()
    conversation: list[MessageParam] = [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "use the tool", "signature": "s"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
    ]
    async with client(serve(create_app([model]))) as anth:
        await anth.messages.create(
            model="echo",
            system="Be brief.",
            messages=conversation,
            max_tokens=50,
            stop_sequences=["END"],
            tools=[WEATHER_TOOL],
            extra_body={"temperature": 0.5, "top_k": 3},  # (this SDK's create() lists neither)
        )

    (request,) = model.adapter.requests
    assert request.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [],
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
    ]
    assert request.params["max_tokens"] == 50
    assert request.params["stop"] == ["END"]
    assert request.params["temperature"] == 0.5
    assert request.params["top_k"] == 3


async def test_the_sync_client_reads_the_same_stream(serve: Serve) -> None:
    base_url = serve(create_app([scripted()]))

    def read() -> str:
        with (
            anthropic.Anthropic(base_url=base_url, api_key="unused", max_retries=0) as anth,
            anth.messages.stream(model="echo", messages=HI, max_tokens=100) as stream,
        ):
            return "".join(stream.text_stream)

    assert await anyio.to_thread.run_sync(read) == (await direct()).text


async def test_lionflows_anthropic_adapter_gets_the_same_response_through_the_server(serve: Serve) -> None:
    model = scripted(responses=["Sure.", "Sure."], tool_calls=CALLS, reasoning="Hmm, weather.")
    base_url = serve(create_app([model]))
    async with iModel(provider="anthropic", model="echo", base_url=base_url, api_key="unused") as relayed:
        through_server = await relayed.invoke([{"role": "user", "content": "hi"}])

    expected = await direct(responses=["Sure."], tool_calls=CALLS, reasoning="Hmm, weather.")
    assert through_server.text == expected.text
    assert through_server.reasoning == expected.reasoning
    assert [(c.id, c.name, c.arguments) for c in through_server.tool_calls] == [
        (c.id, c.name, c.arguments) for c in expected.tool_calls
    ]
    assert through_server.finish_reason == expected.finish_reason == "tool_calls"
    assert through_server.usage == expected.usage


# -- errors -------------------------------------------------------------------------------------------


async def test_an_unknown_model_is_a_404_not_found_error(serve: Serve) -> None:
    async with client(serve(create_app([scripted()]))) as anth:
        with pytest.raises(anthropic.NotFoundError, match="'nope' does not exist") as caught:
            await anth.messages.create(model="nope", messages=HI, max_tokens=10)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": caught.value.body["error"]["message"]},  # type: ignore[index]
    }


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"model": "echo", "messages": [{"role": "user", "content": "hi"}]}',  # no max_tokens
        b'{"model": "echo", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}',
        b'{"model": "echo", "max_tokens": 5, "messages": []}',
        b'{"model": "echo", "max_tokens": 5, "messages": [{"role": "system", "content": "hi"}]}',
        b'{"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image",'
        b' "source": {"type": "url", "url": "https://example.com/a.png"}}]}]}',
        b'{"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],'
        b' "tool_choice": {"type": "tool"}}',
        b'{"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],'
        b' "tools": [{"name": "t"}]}',
        b'{"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_use",'
        b' "id": "x", "name": "t", "input": {}}]}]}',
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_bad_requests_are_400s_in_anthropics_shape(serve: Serve, body: bytes, stream: bool) -> None:
    if stream and body.startswith(b"{") and body.endswith(b"}"):
        body = body[:-1] + b', "stream": true}'
    base_url = serve(create_app([scripted()]))
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            base_url + "/v1/messages", content=body, headers={"content-type": "application/json"}
        )
    assert reply.status_code == 400, reply.text
    error = reply.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"]


async def test_a_missing_max_tokens_is_a_bad_request_to_the_sdk(serve: Serve) -> None:
    async with client(serve(create_app([scripted()]))) as anth:
        # (create() insists on max_tokens: the client's raw post sends a body without it)
        with pytest.raises(anthropic.BadRequestError, match="max_tokens") as caught:
            await anth.post("/v1/messages", cast_to=Message, body={"model": "echo", "messages": HI})
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


async def test_an_upstream_rate_limit_before_the_first_byte_is_a_429(
    serve: Serve, server: LoopbackServer
) -> None:
    server.add(Reply.json(429, {"error": {"message": "slow down"}}, headers={"retry-after": "7"}))
    upstream = iModel(
        provider="openai", model="m", name="up", base_url=server.url + "/v1", api_key="k", max_retries=0
    )
    async with client(serve(create_app([upstream]))) as anth:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await anth.messages.create(model="up", messages=HI, max_tokens=10, stream=True)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


async def test_an_error_mid_stream_is_an_error_event_the_sdk_raises(serve: Serve) -> None:
    model = scripted(fail_after=3)  # StreamInterrupted after 3 chunks
    texts: list[str] = []
    async with client(serve(create_app([model]))) as anth:
        with pytest.raises(anthropic.APIStatusError, match="scripted failure") as caught:
            async with anth.messages.stream(model="echo", messages=HI, max_tokens=100) as stream:
                async for text in stream.text_stream:
                    texts.append(text)
    assert "".join(texts) == REPLY[:15]
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]


async def test_a_model_that_breaks_is_a_500_api_error(serve: Serve) -> None:
    def broken(messages: list[dict[str, Any]]) -> str:
        raise ZeroDivisionError("the model's own bug")

    async with client(serve(create_app([ScriptedModel(name="echo", responses=broken)]))) as anth:
        with pytest.raises(anthropic.InternalServerError) as caught:
            await anth.messages.create(model="echo", messages=HI, max_tokens=10)
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "the model's own bug" not in str(caught.value.body)


# -- the client going away ----------------------------------------------------------------------------


def anthropic_upstream(server: LoopbackServer) -> iModel:
    """A model behind the server that calls the tests' loopback upstream through the anthropic SDK."""
    return iModel(provider="anthropic", model="m", name="up", base_url=server.url, api_key="k", max_retries=0)


def _slow_anthropic_upstream(server: LoopbackServer, pieces: int = 50, *, ended: bool = False) -> None:
    """An Anthropic stream of `pieces` text deltas, 50 ms apart; `ended`: then its end."""
    message: dict[str, Any] = {
        "id": "msg_up",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 0},
    }
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"w{n} "}}
        for n in range(pieces)
    ]
    if ended:
        events += [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": pieces},
            },
            {"type": "message_stop"},
        ]
    server.add(Reply(pieces=anthropic_sse(events), delay=0.05))


async def test_a_client_that_hangs_up_closes_the_upstream_stream(
    serve: Serve, server: LoopbackServer
) -> None:
    _slow_anthropic_upstream(server)
    upstream = anthropic_upstream(server)
    async with client(serve(create_app([upstream]))) as anth:
        stream = await anth.messages.create(model="up", messages=HI, max_tokens=100, stream=True)
        received = 0
        async for _ in stream:
            received += 1
            if received == 3:
                break
        await stream.close()

    # The server noticed and cancelled its call: the upstream sees its stream closed early.
    (request,) = server.requests
    assert await anyio.to_thread.run_sync(request.disconnected.wait, 5)
    assert not request.completed.is_set()


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("refusal", "refusal"), ("content_filter", "refusal")],
)
@pytest.mark.parametrize("streamed", [False, True])
async def test_finish_reasons_read_as_anthropics_stop_reasons(
    serve: Serve, finish: Any, stop_reason: str, streamed: bool
) -> None:
    model = scripted(responses=[ScriptedReply(text="Partial", finish_reason=finish)])
    final: Message
    async with client(serve(create_app([model]))) as anth:
        if streamed:
            async with anth.messages.stream(model="echo", messages=HI, max_tokens=100) as stream:
                final = await stream.get_final_message()
        else:
            final = await anth.messages.create(model="echo", messages=HI, max_tokens=100)
    assert final.stop_reason == stop_reason
    assert blocks(final) == [("text", "Partial")]


async def test_with_api_keys_the_anthropic_client_needs_one(serve: Serve) -> None:
    base_url = serve(create_app([scripted()], api_keys=["right-key"]))
    async with anthropic.AsyncAnthropic(base_url=base_url, api_key="wrong-key", max_retries=0) as anth:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await anth.messages.create(model="echo", messages=HI, max_tokens=10)
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    async with anthropic.AsyncAnthropic(base_url=base_url, api_key="right-key", max_retries=0) as anth:
        message = await anth.messages.create(model="echo", messages=HI, max_tokens=10)
    assert blocks(message) == [("text", REPLY)]


# -- what the review of the chat completions route found, here too ------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        {"extra_body": {"model": "claude-opus"}},
        {"extra_headers": {"x-api-key": "the-clients"}},
        {"timeout": 0.001},
    ],
    ids=["model", "key", "timeout"],
)
async def test_a_client_cannot_steer_the_servers_upstream_call(
    serve: Serve, server: LoopbackServer, field: dict[str, Any]
) -> None:
    _slow_anthropic_upstream(server, pieces=2, ended=True)
    upstream = iModel(
        provider="anthropic", model="m", name="up", base_url=server.url, api_key="k", max_retries=0
    )
    base_url = serve(create_app([upstream]))
    body = {"model": "up", "messages": HI, "max_tokens": 10, **field}
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(base_url + "/v1/messages", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == {
        "type": "invalid_request_error",
        "message": reply.json()["error"]["message"],
    }
    assert server.requests == []


@pytest.mark.parametrize(
    "failure", [RateLimitError("slow down", retry_after=3), ZeroDivisionError("the model's own bug")]
)
async def test_a_failure_after_a_ping_but_before_the_first_event_is_an_error_event(
    serve: Serve, failure: Exception
) -> None:
    """Once a ping has started the response, a failure can only be told as an error event."""
    model = ScriptedModel(name="echo", connect_delay=0.4, fail_on_open=[failure], max_retries=0)
    base_url = serve(create_app([model], ping_interval=0.05))
    body = {"model": "echo", "messages": HI, "max_tokens": 10, "stream": True}
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(base_url + "/v1/messages", json=body)
    assert reply.status_code == 200
    assert reply.content.startswith(b": ping\n\n")
    (event,) = [piece for piece in reply.content.split(b"\n\n") if piece and not piece.startswith(b":")]
    name, data = event.split(b"\n")
    assert name == b"event: error"
    assert json.loads(data.removeprefix(b"data: "))["type"] == "error"

    model.adapter.fail_on_open.append(failure)
    async with client(base_url) as anth:
        with pytest.raises(anthropic.APIStatusError):
            async with anth.messages.stream(model="echo", messages=HI, max_tokens=10) as stream:
                await stream.get_final_message()


async def test_a_client_that_hangs_up_on_a_whole_message_closes_the_upstream_call(
    serve: Serve, server: LoopbackServer
) -> None:
    _slow_anthropic_upstream(server, pieces=60)  # three seconds of upstream stream
    upstream = iModel(
        provider="anthropic", model="m", name="up", base_url=server.url, api_key="k", max_retries=0
    )
    base_url = serve(create_app([upstream]))
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=0.4)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(base_url + "/v1/messages", json={"model": "up", "messages": HI, "max_tokens": 10})
    (request,) = server.requests
    assert await anyio.to_thread.run_sync(request.disconnected.wait, 5)
    assert not request.completed.is_set(), "the upstream stream ran to its end after the client left"
