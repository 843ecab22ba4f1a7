"""A hostile review of ``/v1/chat/completions``: bad input, hang-ups at every point, many streams at
once, failures before and after the first byte, and the wire format of the event stream, checked
with real clients (httpx, the official openai client) against a real server."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx
import openai
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageFunctionToolCall, ChatCompletionMessageParam

from lionflow import iModel
from lionflow.errors import RateLimitError
from lionflow.serve import create_app
from lionflow.serve._chat_completions import ChunkEncoder
from lionflow.serve._hub import relay
from lionflow.serve._sse import Failed
from lionflow.testing import ScriptedModel
from tests.loopback import LoopbackServer, Reply, sse
from tests.serve.conftest import serving

Serve = Callable[[FastAPI], str]
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
PATH = "/v1/chat/completions"
anyio_test = pytest.mark.anyio


def _event(text: str = "", finish: str | None = None) -> dict[str, Any]:
    delta = {"content": text} if text else {}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "u", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}


def _upstream_reply(pieces: int = 2, delay: float = 0.0) -> Reply:
    events = [_event(f"w{n} ") for n in range(pieces)] + [_event(finish="stop")]
    return Reply(pieces=sse(events), delay=delay)


def _upstream(server: LoopbackServer, **options: Any) -> iModel:
    return iModel(
        provider="openai", model="m", name="up", base_url=server.url + "/v1", api_key="k", **options
    )


def _events(raw: bytes) -> list[bytes]:
    """The SSE events of a body, pings included, in order, without their ``id:`` lines (which must
    number the events 1, 2, 3, ... so that a client can resume after any of them)."""
    events: list[bytes] = []
    expected = 1
    for event in raw.split(b"\n\n"):
        if not event:
            continue
        if event.startswith(b"id: "):
            line, _, event = event.partition(b"\n")
            assert int(line.removeprefix(b"id: ")) == expected, raw
            expected += 1
        events.append(event)
    return events


def _data(raw: bytes) -> list[str]:
    return [e.removeprefix(b"data: ").decode() for e in _events(raw) if e.startswith(b"data: ")]


def _assert_well_ended(raw: bytes) -> None:
    """`[DONE]` exactly once, last; every other data line a JSON object."""
    data = _data(raw)
    assert data.count("[DONE]") == 1, raw
    assert data[-1] == "[DONE]", raw
    for payload in data[:-1]:
        assert isinstance(json.loads(payload), dict)


def _assert_openai_error(reply: httpx.Response) -> None:
    error = reply.json()["error"]
    assert isinstance(error["message"], str)
    assert {"type", "param", "code"} <= set(error)


# -- bad input: property-based ----------------------------------------------------------------------

_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_part = st.one_of(
    _junk,
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url", "input_audio", "x"])},
        optional={
            "text": _junk,
            "image_url": _junk,
        },
    ),
)
_message = st.fixed_dictionaries(
    {"role": st.one_of(st.sampled_from(["user", "system", "assistant", "tool", "developer", "bot"]), _junk)},
    optional={
        "content": st.one_of(st.text(max_size=10), st.lists(_part, max_size=3), _junk),
        "tool_calls": st.one_of(
            _junk, st.lists(st.dictionaries(st.sampled_from(["id", "type", "function"]), _junk))
        ),
        "tool_call_id": _junk,
        "name": _junk,
    },
)
# Every field of the request, each with a value of its right type or of any other.
_fields: dict[str, st.SearchStrategy[Any]] = {
    "stream_options": st.one_of(_junk, st.fixed_dictionaries({"include_usage": _junk})),
    "n": _junk,
    "max_tokens": st.one_of(_junk, st.integers(min_value=-(2**70), max_value=2**70)),
    "max_completion_tokens": _junk,
    "temperature": _junk,
    "top_p": _junk,
    "stop": st.one_of(_junk, st.lists(_junk, max_size=5)),
    "seed": _junk,
    "tools": st.one_of(
        _junk, st.lists(st.dictionaries(st.sampled_from(["type", "function", "name"]), _junk))
    ),
    "tool_choice": st.one_of(_junk, st.sampled_from(["auto", "none", "required", "weird"])),
    "response_format": st.one_of(
        _junk, st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema", "x"])})
    ),
    "user": _junk,
    # what the OpenAI API names and this server passes on
    "logprobs": _junk,
    "parallel_tool_calls": _junk,
    "metadata": _junk,
    # what an SDK call takes besides the API's fields
    "timeout": _junk,
    "extra_headers": _junk,
    "extra_query": _junk,
    "extra_body": _junk,
    "unknown_field": _junk,
}
_whole_bodies = st.fixed_dictionaries(
    {
        "model": st.one_of(st.just("up"), _junk),
        "messages": st.one_of(st.just(HI), st.lists(_message, min_size=1, max_size=3), _junk),
        "stream": st.booleans(),
    },
    optional=_fields,
)
# One field at a time on an otherwise good request, so that each field's own check is reached.
_one_field = st.sampled_from(sorted(_fields)).flatmap(
    lambda name: _fields[name].map(lambda value: {name: value})
)
_single_field_bodies = st.builds(
    lambda field, stream: {"model": "up", "messages": HI, "stream": stream, **field},
    _one_field,
    st.booleans(),
)
_bodies = st.one_of(_whole_bodies, _single_field_bodies)


# Under CI the same examples every run (a red run must be reproducible); elsewhere new ones each time.
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)
@given(body=_bodies)
def _check_body(body: dict[str, Any], *, url: str, http: httpx.Client) -> None:
    try:
        reply = http.post(url + PATH, content=json.dumps(body).encode())
    except httpx.TimeoutException:
        pytest.fail(f"no answer within the bound for {body!r}")
    # 502/504: the upstream's answer judged; a 500 is the server's own failure on bad input.
    assert reply.status_code < 500 or reply.status_code in (502, 504), (body, reply.text)
    if reply.status_code != 200:
        _assert_openai_error(reply)
    elif body["stream"] is True:
        _assert_well_ended(reply.content)


def test_fuzzed_request_bodies_are_never_a_500_nor_a_hang() -> None:
    """Against a real upstream (the openai adapter): what a body carries reaches the SDK call, so a
    field of the wrong type must be refused as the client's mistake, not crash the server."""
    with LoopbackServer() as upstream:
        upstream.default = _upstream_reply()
        model = _upstream(upstream, max_retries=0)
        with serving(create_app([model])) as url, httpx.Client(timeout=10) as http:
            _check_body(url=url, http=http)


@anyio_test
@pytest.mark.parametrize(
    "field",
    [{"timeout": "soon"}, {"extra_headers": 5}, {"extra_body": 5}, {"extra_query": "a=b"}],
    ids=["timeout", "extra_headers", "extra_body", "extra_query"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_field_of_the_wrong_type_is_a_400_not_a_500(
    serve: Serve, server: LoopbackServer, field: dict[str, Any], stream: bool
) -> None:
    server.default = _upstream_reply()
    base_url = serve(create_app([_upstream(server, max_retries=0)]))
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(
            base_url + PATH, json={"model": "up", "messages": HI, "stream": stream, **field}
        )
    assert reply.status_code == 400, reply.text
    _assert_openai_error(reply)


@anyio_test
@pytest.mark.parametrize(
    ("path", "body"),
    [
        # found by test_fuzzed_request_bodies_are_never_a_500_nor_a_hang (--hypothesis-seed=5)
        (PATH, {"model": "up", "messages": HI, "stream": False, "logprobs": float("inf")}),
        (PATH, {"model": "up", "messages": HI, "stream": True, "metadata": {"a": float("nan")}}),
        (PATH, {"model": "up", "messages": [{"role": "user", "content": "hi", "x": -float("inf")}]}),
        ("/v1/responses", {"model": "up", "input": "hi", "unknown_field": float("inf")}),
        ("/v1/messages", {"model": "up", "max_tokens": 5, "messages": HI, "metadata": {"a": float("nan")}}),
    ],
    ids=["logprobs", "streamed-metadata", "in-a-message", "responses", "messages"],
)
async def test_nan_and_infinity_in_a_body_are_a_400_not_a_500(
    serve: Serve, server: LoopbackServer, path: str, body: dict[str, Any]
) -> None:
    # json.dumps writes them as NaN and Infinity, which pydantic's reader takes; JSON has no such
    # numbers, and the SDK refuses to send them on (a 500 when the server passed them).
    server.default = _upstream_reply()
    base_url = serve(create_app([_upstream(server, max_retries=0)]))
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(base_url + path, content=json.dumps(body).encode())
    assert reply.status_code == 400, reply.text
    assert "NaN" in reply.json()["error"]["message"]
    assert server.requests == []  # refused before anything went upstream


@anyio_test
@pytest.mark.parametrize(
    ("field", "what"),
    [
        ({"extra_body": {"model": "o1-pro"}}, "the upstream model"),
        ({"extra_headers": {"authorization": "Bearer the-clients"}}, "the server's credentials"),
        ({"extra_query": {"api-version": "x"}}, "the upstream URL"),
    ],
    ids=["model", "authorization", "query"],
)
async def test_a_client_cannot_steer_the_servers_upstream_call(
    serve: Serve, server: LoopbackServer, field: dict[str, Any], what: str
) -> None:
    """The server serves the models it names, with its own key: a request body must not choose
    another upstream model, replace the server's credentials, or add to the upstream URL."""
    server.default = _upstream_reply()
    base_url = serve(create_app([_upstream(server, max_retries=0)]))
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(
            base_url + PATH, json={"model": "up", "messages": HI, "stream": True, **field}
        )
    if reply.status_code == 400:
        return  # refused: fine
    (seen,) = server.requests
    assert seen.json["model"] == "m", what
    assert seen.headers["authorization"] == "Bearer k", what
    assert seen.query == {}, what


@anyio_test
async def test_an_unknown_response_format_type_is_a_400(serve: Serve, server: LoopbackServer) -> None:
    server.default = _upstream_reply()
    base_url = serve(create_app([_upstream(server, max_retries=0)]))
    body = {"model": "up", "messages": HI, "stream": True, "response_format": {"type": "weird"}}
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(base_url + PATH, json=body)
    assert reply.status_code == 400, (reply.text, [r.json for r in server.requests])
    assert reply.json()["error"]["param"].startswith("response_format")


@anyio_test
@pytest.mark.parametrize(("method", "path"), [("GET", PATH), ("POST", "/v1/nothing-here")])
async def test_an_unknown_route_answers_in_the_openai_error_shape(
    serve: Serve, method: str, path: str
) -> None:
    base_url = serve(create_app([ScriptedModel(name="echo")]))
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.request(method, base_url + path)
    assert reply.status_code in (404, 405)
    _assert_openai_error(reply)


# -- failures before and after the first byte ------------------------------------------------------


@anyio_test
@pytest.mark.parametrize(
    "failure",
    [RateLimitError("slow down", retry_after=3), ZeroDivisionError("the model's own bug")],
    ids=["lionflow", "other"],
)
async def test_a_failure_after_a_ping_but_before_the_first_event_is_an_error_event(
    serve: Serve, failure: Exception
) -> None:
    """Once a ping has started the response, a model that then fails before its first chunk can
    only be told as an error event; the client must not get a 200 with nothing in it."""
    model = ScriptedModel(name="echo", connect_delay=0.4, fail_on_open=[failure], max_retries=0)
    base_url = serve(create_app([model], ping_interval=0.05))
    body = {"model": "echo", "messages": HI, "stream": True}
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(base_url + PATH, json=body)
    assert reply.status_code == 200
    assert reply.content.startswith(b": ping\n\n")
    _assert_well_ended(reply.content)
    (error,) = [json.loads(d) for d in _data(reply.content) if d != "[DONE]"]
    assert {"message", "type"} <= set(error["error"])

    # And the official client raises instead of reading an empty answer.
    model.adapter.fail_on_open.append(failure)
    async with openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0) as client:
        stream = await client.chat.completions.create(model="echo", messages=HI, stream=True)
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass


@anyio_test
async def test_a_model_failing_after_its_first_chunk_with_a_non_lionflow_error_ends_with_an_error_event(
    serve: Serve,
) -> None:
    def delay(position: int) -> float:
        if position == 2:
            raise ZeroDivisionError("the model's own bug")
        return 0.0

    base_url = serve(create_app([ScriptedModel(name="echo", responses=["abcdefghijkl"], delay=delay)]))
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(base_url + PATH, json={"model": "echo", "messages": HI, "stream": True})
    assert reply.status_code == 200
    _assert_well_ended(reply.content)
    *chunks, error = [json.loads(d) for d in _data(reply.content)[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "abcdefgh"
    assert error["error"]["type"] == "server_error"
    assert "own bug" not in error["error"]["message"]


# -- the client going away ---------------------------------------------------------------------------


def _wait(event: threading.Event) -> bool:
    return event.wait(5)


async def _eventually(check: Callable[[], bool]) -> bool:
    """Whether `check` comes true within five seconds (state another thread or task changes)."""
    for _ in range(500):
        if check():
            return True
        await anyio.sleep(0.01)
    return check()


@anyio_test
async def test_a_client_that_hangs_up_before_the_first_event_closes_the_upstream_call(
    serve: Serve, server: LoopbackServer
) -> None:
    server.add(Reply(pieces=_upstream_reply().pieces, head_delay=3))
    base_url = serve(create_app([_upstream(server, max_retries=0)], ping_interval=30))
    body = {"model": "up", "messages": HI, "stream": True}
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=0.3)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(base_url + PATH, json=body)
    assert await _eventually(lambda: bool(server.requests))
    (seen,) = server.requests
    assert await anyio.to_thread.run_sync(_wait, seen.disconnected)
    assert not seen.completed.is_set()


@anyio_test
async def test_a_client_that_hangs_up_on_a_whole_completion_closes_the_upstream_call(
    serve: Serve, server: LoopbackServer
) -> None:
    """Not streamed, the client waits for the whole answer; if it gives up, the server must stop the
    upstream call too (LiteLLM #30244's leak), not run it to the end for no one."""
    server.add(_upstream_reply(pieces=60, delay=0.05))  # three seconds of upstream stream
    base_url = serve(create_app([_upstream(server, max_retries=0)]))
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=0.4)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(base_url + PATH, json={"model": "up", "messages": HI})
    (seen,) = server.requests
    assert await anyio.to_thread.run_sync(_wait, seen.disconnected)
    assert not seen.completed.is_set(), "the upstream stream ran to its end after the client left"


async def _read_then_hang_up(http: httpx.AsyncClient, url: str, events: int, *, stream: bool = True) -> None:
    body = {"model": "echo", "messages": HI, "stream": stream}
    async with http.stream("POST", url + PATH, json=body) as reply:
        if events == 0:
            return
        seen = 0
        async for piece in reply.aiter_raw():
            seen += piece.count(b"\n\n")
            if seen >= events:
                return


@anyio_test
async def test_hanging_up_at_every_point_leaves_no_stream_open_and_the_server_serving(serve: Serve) -> None:
    reply = "0123456789" * 3
    model = ScriptedModel(
        name="echo", responses=lambda messages: reply, chunk_size=2, delay=0.02, connect_delay=0.05
    )
    base_url = serve(create_app([model], ping_interval=0.03))
    async with httpx.AsyncClient(timeout=10) as http:
        for cut in range(0, 18):  # before the first event (pings only), between events, near the end
            await _read_then_hang_up(http, base_url, cut)
        async with anyio.create_task_group() as group:
            for cut in range(0, 18, 2):
                group.start_soon(_read_then_hang_up, http, base_url, cut)
        assert await _eventually(lambda: model.open_streams == 0)

        # Then whole streams, one after another and at once, still come out whole.
        async def whole() -> None:
            answer = await http.post(base_url + PATH, json={"model": "echo", "messages": HI, "stream": True})
            _assert_well_ended(answer.content)
            text = "".join(
                json.loads(d)["choices"][0]["delta"].get("content") or "" for d in _data(answer.content)[:-1]
            )
            assert text == reply

        for _ in range(3):
            await whole()
        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(whole)
    assert model.open_streams == 0


# -- many streams at once --------------------------------------------------------------------------


@anyio_test
async def test_fifty_concurrent_streams_each_come_out_whole_and_apart(serve: Serve) -> None:
    def echo(messages: list[dict[str, Any]]) -> str:
        return f"<{messages[-1]['content']}>" * 5

    model = ScriptedModel(name="echo", responses=echo, chunk_size=3, delay=0.005)
    base_url = serve(create_app([model]))
    results: dict[int, bytes] = {}

    async def one(http: httpx.AsyncClient, number: int) -> None:
        body = {
            "model": "echo",
            "messages": [{"role": "user", "content": f"stream {number}"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        reply = await http.post(base_url + PATH, json=body)
        assert reply.status_code == 200
        results[number] = reply.content

    limits = httpx.Limits(max_connections=60)
    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=20, limits=limits) as http, anyio.create_task_group() as group:
            for number in range(50):
                group.start_soon(one, http, number)

    ids: set[str] = set()
    for number, raw in results.items():
        _assert_well_ended(raw)
        chunks = [json.loads(d) for d in _data(raw)[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert text == f"<stream {number}>" * 5
        stream_ids = {c["id"] for c in chunks}
        assert len(stream_ids) == 1
        ids |= stream_ids
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["total_tokens"] > 0
    assert len(results) == len(ids) == 50
    assert model.open_streams == 0


# -- what a stream carries -------------------------------------------------------------------------


@anyio_test
async def test_include_usage_ends_with_the_usage_chunk_even_when_the_model_reported_none(
    serve: Serve,
) -> None:
    """OpenAI: with include_usage "an additional chunk will be streamed before the data: [DONE]
    message ... the choices field will always be an empty array". Clients that read usage from the
    last chunk (and proxies that bill by it) rely on it being there."""
    base_url = serve(create_app([ScriptedModel(name="echo", usage=False)]))
    body = {"model": "echo", "messages": HI, "stream": True, "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(base_url + PATH, json=body)
    _assert_well_ended(reply.content)
    last = json.loads(_data(reply.content)[-2])
    assert last["choices"] == [], last
    assert "usage" in last


@anyio_test
async def test_several_tool_calls_stream_as_indexed_deltas_and_assemble(serve: Serve) -> None:
    calls = [
        {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_a"},
        {"name": "get_time", "arguments": {"zone": "Europe/Paris", "format": "24h"}, "id": "call_b"},
    ]
    model = ScriptedModel(name="echo", responses=lambda messages: "", tool_calls=calls, chunk_size=4)
    base_url = serve(create_app([model]))
    async with httpx.AsyncClient(timeout=10) as http:
        raw = (
            await http.post(base_url + PATH, json={"model": "echo", "messages": HI, "stream": True})
        ).content
    _assert_well_ended(raw)
    deltas = [
        call for d in _data(raw)[:-1] for call in json.loads(d)["choices"][0]["delta"].get("tool_calls") or []
    ]
    firsts = [d for d in deltas if "id" in d]
    assert [(d["index"], d["id"], d["function"]["name"]) for d in firsts] == [
        (0, "call_a", "get_weather"),
        (1, "call_b", "get_time"),
    ]
    for index, call in enumerate(calls):
        arguments = "".join(d["function"]["arguments"] for d in deltas if d["index"] == index)
        assert json.loads(arguments) == call["arguments"]

    async with openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="unused") as client:
        async with client.chat.completions.stream(model="echo", messages=HI) as stream:
            final = await stream.get_final_completion()
        whole = await client.chat.completions.create(model="echo", messages=HI)
    for message in (final.choices[0].message, whole.choices[0].message):
        made = [c for c in message.tool_calls or [] if isinstance(c, ChatCompletionMessageFunctionToolCall)]
        assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in made] == [
            (c["id"], c["name"], c["arguments"]) for c in calls
        ]
    assert final.choices[0].finish_reason == whole.choices[0].finish_reason == "tool_calls"


@anyio_test
async def test_reasoning_streams_as_reasoning_content_and_the_sync_client_reads_it(serve: Serve) -> None:
    model = ScriptedModel(name="echo", responses=["Answer.", "Answer."], reasoning="Let me think.")
    base_url = serve(create_app([model]))

    def read() -> tuple[str, str, Any]:
        with openai.OpenAI(base_url=base_url + "/v1", api_key="unused") as client:
            stream = client.chat.completions.create(model="echo", messages=HI, stream=True)
            chunks = [c for c in stream if c.choices]
            whole = client.chat.completions.create(model="echo", messages=HI)
        thought = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks)
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        return thought, text, whole.choices[0].message

    thought, text, message = await anyio.to_thread.run_sync(read)
    assert (thought, text) == ("Let me think.", "Answer.")
    assert message.content == "Answer."
    assert getattr(message, "reasoning_content", None) == "Let me think."


@anyio_test
@pytest.mark.parametrize("case", ["whole", "failed_mid_stream", "pinged"])
async def test_the_event_stream_wire_format(serve: Serve, case: str) -> None:
    """Headers for proxies, ``: ping`` comments only, every event a ``data:`` line of JSON, the end
    marker exactly once and nothing after it."""
    cases: dict[str, dict[str, Any]] = {
        "whole": {},
        "failed_mid_stream": {"fail_after": 3, "max_retries": 0},
        "pinged": {"delay": lambda position: 0.3 if position == 1 else 0.0},
    }
    base_url = serve(create_app([ScriptedModel(name="echo", **cases[case])], ping_interval=0.05))
    body = {"model": "echo", "messages": HI, "stream": True}
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("POST", base_url + PATH, json=body) as reply,
    ):
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert reply.headers["cache-control"] == "no-cache"
        assert reply.headers["x-accel-buffering"] == "no"
        raw = b"".join([piece async for piece in reply.aiter_raw()])
    assert raw.endswith(b"data: [DONE]\n\n")
    for event in _events(raw):
        assert event == b": ping" or (event.startswith(b"data: ") and b"\n" not in event), event
    _assert_well_ended(raw)
    if case == "pinged":
        assert b": ping" in _events(raw)
    if case == "failed_mid_stream":
        assert "error" in json.loads(_data(raw)[-2])


@anyio_test
async def test_a_relay_of_an_upstream_that_sent_much_at_once_gives_way_to_other_tasks() -> None:
    # A model (or upstream) with its whole answer already at hand is read without a pause: the
    # relay must still let the server's other tasks run (other streams, their connects' timers).
    big = ScriptedModel(name="big", responses=["x" * 20_000], chunk_size=1)
    sent = 0
    turns = 0
    done = anyio.Event()

    class Sink:
        async def send(self, item: bytes | Failed) -> None:
            nonlocal sent
            sent += 1

    async def other() -> None:
        nonlocal turns
        while not done.is_set():
            turns += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        group.start_soon(other)
        await relay(lambda: big.stream("hi"), ChunkEncoder("big", include_usage=False), Sink())
        turns_while_relaying = turns
        done.set()
    assert sent > 20_000
    assert turns_while_relaying > 10  # (1 or 2 when the relay held the loop through its answer)
