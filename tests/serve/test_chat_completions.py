"""``/v1/chat/completions``, checked with the official openai client (async and sync) and with
lionflow's own openai adapter pointed at the server: what they read equals what the model behind the
server answers when called directly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import openai
import pytest
from fastapi import FastAPI
from openai.types.chat import ChatCompletionMessageParam

from lionflow import Response, iModel
from lionflow.serve import create_app
from lionflow.session import Session, SQLiteStore
from lionflow.session.messages.content import AssistantResponseContent
from lionflow.testing import ScriptedModel
from tests.loopback import LoopbackServer, Reply, sse

pytestmark = pytest.mark.anyio

Serve = Callable[[FastAPI], str]
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
REPLY = "Hello there, this streams in pieces."
CALLS = [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_w"}]


def scripted(**options: Any) -> ScriptedModel:
    options.setdefault("responses", [REPLY] * 4)
    return ScriptedModel(name="echo", chunk_size=5, **options)


def upstream_model(server: LoopbackServer, **options: Any) -> iModel:
    """A model behind the server that calls the tests' loopback upstream through the openai SDK."""
    return iModel(
        provider="openai", model="m", name="up", base_url=server.url + "/v1", api_key="k", **options
    )


async def direct(**options: Any) -> Response:
    """What the model behind the server answers when called directly."""
    return await scripted(**options).invoke(HI)


async def test_a_streamed_completion_reads_as_the_model_answered(serve: Serve) -> None:
    client = openai.AsyncOpenAI(base_url=serve(create_app([scripted()])) + "/v1", api_key="unused")
    stream = await client.chat.completions.create(
        model="echo", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    await client.close()

    expected = await direct()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == len(REPLY) // 5 + 1
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]  # include_usage: a last chunk with no choices and the whole call's usage
    assert last.choices == []
    assert last.usage is not None
    assert expected.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        expected.usage.input_tokens,
        expected.usage.output_tokens,
        expected.usage.total_tokens,
    )
    assert len({c.id for c in chunks}) == 1


async def test_without_include_usage_no_usage_chunk_is_sent(serve: Serve) -> None:
    client = openai.AsyncOpenAI(base_url=serve(create_app([scripted()])) + "/v1", api_key="unused")
    stream = await client.chat.completions.create(model="echo", messages=HI, stream=True)
    chunks = [chunk async for chunk in stream]
    await client.close()
    assert all(c.choices and c.usage is None for c in chunks)


async def test_a_whole_completion_reads_as_the_model_answered(serve: Serve) -> None:
    client = openai.AsyncOpenAI(base_url=serve(create_app([scripted()])) + "/v1", api_key="unused")
    completion = await client.chat.completions.create(model="echo", messages=HI)
    await client.close()

    expected = await direct()
    assert completion.choices[0].message.content == expected.text
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert expected.usage is not None
    assert completion.usage.total_tokens == expected.usage.total_tokens


async def test_streamed_tool_calls_assemble_in_the_clients_stream_helper(serve: Serve) -> None:
    client = openai.AsyncOpenAI(
        base_url=serve(create_app([scripted(responses=[""], tool_calls=CALLS)])) + "/v1", api_key="unused"
    )
    async with client.chat.completions.stream(model="echo", messages=HI) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    await client.close()

    (call,) = final.choices[0].message.tool_calls or []
    assert call.id == "call_w"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"


async def test_the_sync_client_reads_the_same_stream(serve: Serve) -> None:
    base_url = serve(create_app([scripted()])) + "/v1"

    def read() -> str:
        with openai.OpenAI(base_url=base_url, api_key="unused") as client:
            stream = client.chat.completions.create(model="echo", messages=HI, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert await anyio.to_thread.run_sync(read) == (await direct()).text


async def test_lionflows_openai_adapter_gets_the_same_response_through_the_server(serve: Serve) -> None:
    base_url = serve(create_app([scripted(responses=["Sure.", "Sure."], tool_calls=CALLS)])) + "/v1"
    async with iModel(provider="openai", model="echo", base_url=base_url, api_key="unused") as relayed:
        through_server = await relayed.invoke(HI)

    expected = await direct(responses=["Sure."], tool_calls=CALLS)
    assert through_server.text == expected.text
    assert [(c.id, c.name, c.arguments) for c in through_server.tool_calls] == [
        (c.id, c.name, c.arguments) for c in expected.tool_calls
    ]
    assert through_server.finish_reason == expected.finish_reason == "tool_calls"
    assert through_server.usage == expected.usage


async def test_models_and_health(serve: Serve) -> None:
    base_url = serve(create_app([scripted(), ScriptedModel(name="other")]))
    async with openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="unused") as client:
        listed = [model.id async for model in client.models.list()]
    assert listed == ["echo", "other"]
    async with httpx.AsyncClient() as http:
        assert (await http.get(base_url + "/healthz")).json() == {"status": "ok"}


# -- errors -------------------------------------------------------------------------------------------


async def test_bad_requests_are_400s_naming_the_field(serve: Serve) -> None:
    client = openai.AsyncOpenAI(base_url=serve(create_app([scripted()])) + "/v1", api_key="unused")
    async with client:
        with pytest.raises(openai.NotFoundError, match="'nope' does not exist"):
            await client.chat.completions.create(model="nope", messages=HI)
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="echo", messages=HI, n=2)
        assert caught.value.param == "n"
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="echo", messages=HI, temperature=-1)
        assert caught.value.param == "temperature"
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="echo", messages=[])
        assert caught.value.param == "messages"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"model": 3, "messages": "hi"}', b'{"model": "echo", "messages": [{}]}'],
)
async def test_malformed_bodies_are_400s_never_500s(serve: Serve, body: bytes) -> None:
    base_url = serve(create_app([scripted()]))
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            base_url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["type"] == "invalid_request_error"


async def test_a_body_over_the_limit_is_413(serve: Serve) -> None:
    base_url = serve(create_app([scripted()], max_body_bytes=1000))
    big = {"model": "echo", "messages": [{"role": "user", "content": "x" * 2000}]}
    async with httpx.AsyncClient() as http:
        declared = await http.post(base_url + "/v1/chat/completions", json=big)

        async def pieces() -> Any:
            yield json.dumps(big).encode()  # chunked: no content-length to trust

        streamed = await http.post(base_url + "/v1/chat/completions", content=pieces())
    assert declared.status_code == streamed.status_code == 413


async def test_an_upstream_rate_limit_before_the_first_byte_is_a_429_with_retry_after(
    serve: Serve, server: LoopbackServer
) -> None:
    server.add(Reply.json(429, {"error": {"message": "slow down"}}, headers={"retry-after": "7"}))
    upstream = iModel(
        provider="openai", model="m", name="up", base_url=server.url + "/v1", api_key="k", max_retries=0
    )
    client = openai.AsyncOpenAI(
        base_url=serve(create_app([upstream])) + "/v1", api_key="unused", max_retries=0
    )
    async with client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="up", messages=HI, stream=True)
    assert caught.value.response.headers["retry-after"] == "7"


async def test_an_error_mid_stream_is_an_error_event_then_the_end(serve: Serve) -> None:
    model = scripted(fail_after=3)  # StreamInterrupted after 3 chunks
    client = openai.AsyncOpenAI(base_url=serve(create_app([model])) + "/v1", api_key="unused")
    texts: list[str] = []
    async with client:
        stream = await client.chat.completions.create(model="echo", messages=HI, stream=True)
        with pytest.raises(openai.APIError, match="scripted failure"):
            async for chunk in stream:
                texts.append(chunk.choices[0].delta.content or "")
    assert "".join(texts) == REPLY[:15]


# -- the client going away ----------------------------------------------------------------------------


def _slow_upstream(server: LoopbackServer, pieces: int = 50) -> None:
    def event(text: str) -> dict[str, Any]:
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        return {"id": "u", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}

    server.add(Reply(pieces=sse([event(f"w{n} ") for n in range(pieces)]), delay=0.05))


async def test_a_client_that_hangs_up_closes_the_upstream_stream_and_the_partial_turn_is_stored(
    serve: Serve, server: LoopbackServer, tmp_path: Path
) -> None:
    _slow_upstream(server)
    upstream = iModel(provider="openai", model="m", name="up", base_url=server.url + "/v1", api_key="k")
    store = SQLiteStore(tmp_path / "serve.db")
    client = openai.AsyncOpenAI(base_url=serve(create_app([upstream], store=store)) + "/v1", api_key="unused")
    stream = await client.chat.completions.create(model="up", messages=HI, stream=True)
    received = []
    async for chunk in stream:
        received.append(chunk)
        if len(received) == 2:
            break
    await stream.close()

    # The server noticed and cancelled its call: the upstream sees its stream closed early.
    (request,) = server.requests
    assert await anyio.to_thread.run_sync(request.disconnected.wait, 5)
    assert not request.completed.is_set()
    # The turn is stored with what had arrived (at least what the client saw), marked incomplete.
    with anyio.fail_after(10):
        while True:
            try:
                await client.chat.completions.retrieve(received[0].id)
                break
            except openai.NotFoundError:
                await anyio.sleep(0.02)
    await client.close()
    session = await Session.load(store, received[0].id)
    answer = session.get_branch(received[0].id).messages[-1].content
    assert isinstance(answer, AssistantResponseContent)
    assert answer.incomplete is True
    seen = "".join(chunk.choices[0].delta.content or "" for chunk in received)
    assert answer.assistant_response.startswith(seen)
    assert seen.startswith("w0 ")
    await store.aclose()


async def test_silence_is_filled_with_pings(serve: Serve) -> None:
    model = scripted(delay=lambda position: 0.6 if position == 2 else 0.0)
    base_url = serve(create_app([model], ping_interval=0.1))
    body = {"model": "echo", "messages": HI, "stream": True}
    async with (
        httpx.AsyncClient() as http,
        http.stream("POST", base_url + "/v1/chat/completions", json=body) as reply,
    ):
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert reply.headers["cache-control"] == "no-cache"
        assert reply.headers["x-accel-buffering"] == "no"
        raw = b"".join([piece async for piece in reply.aiter_raw()])
    assert b": ping\n\n" in raw
    assert raw.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_model_that_breaks_is_a_500_in_the_apis_shape_not_a_dropped_connection(
    serve: Serve, stream: bool
) -> None:
    def broken(messages: list[dict[str, Any]]) -> str:
        raise ZeroDivisionError("the model's own bug")

    base_url = serve(create_app([ScriptedModel(name="echo", responses=broken)]))
    body = {"model": "echo", "messages": HI, "stream": stream}
    async with httpx.AsyncClient() as http:
        reply = await http.post(base_url + "/v1/chat/completions", json=body)
    assert reply.status_code == 500
    error = reply.json()["error"]
    assert error["type"] == "server_error"
    assert "the model's own bug" not in error["message"]  # the cause is logged, not told
