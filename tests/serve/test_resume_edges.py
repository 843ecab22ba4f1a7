"""A hostile review of resumable streams (``lionflow.serve._hub``) and of the Anthropic Messages and
OpenAI Responses endpoints: several followers of one stream, bad ``Last-Event-ID``s, the resume grace
as the upstream server sees it, expiry of finished streams, shutdown with a stream live, and the
event structure of mixed answers. Real parts only: a real server, httpx, the official clients,
`ScriptedModel` and the loopback upstream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import anthropic
import anyio
import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lionflow import iModel
from lionflow.serve import create_app
from lionflow.testing import ScriptedModel
from tests.loopback import LoopbackServer, Reply, sse
from tests.serve.conftest import serving
from tests.serve.test_command import serve_process
from tests.serve.test_resume import split

pytestmark = pytest.mark.anyio

Serve = Callable[[FastAPI], str]
CHAT = "/v1/chat/completions"
SSE = {"accept": "text/event-stream"}
REPLY = "".join(f"word{n} " for n in range(40))
BODY: dict[str, Any] = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def _scripted(delay: float) -> ScriptedModel:
    return ScriptedModel(name="echo", responses=[REPLY] * 20, chunk_size=6, delay=delay)


def _text(events: list[tuple[int, bytes]]) -> str:
    text = ""
    for _, data in events:
        payload = data.removeprefix(b"data: ")
        if payload != b"[DONE]":
            choices = json.loads(payload)["choices"]
            text += "".join(choice["delta"].get("content") or "" for choice in choices)
    return text


async def _open_and_cut(http: httpx.AsyncClient, url: str, cut: int) -> tuple[str, list[tuple[int, bytes]]]:
    """Start a streamed completion, hang up after `cut` events: its id and what was seen."""
    seen = b""
    async with http.stream("POST", url + CHAT, json=BODY) as reply:
        async for piece in reply.aiter_raw():
            seen += piece
            if len(split(seen)) >= cut:
                break
    events = split(seen)[:cut]
    return str(json.loads(events[0][1].removeprefix(b"data: "))["id"]), events


async def _resume_and_cut(http: httpx.AsyncClient, url: str, after: int, cut: int) -> list[tuple[int, bytes]]:
    seen = b""
    headers = SSE | {"last-event-id": str(after)}
    async with http.stream("GET", url, headers=headers) as reply:
        assert reply.status_code == 200
        async for piece in reply.aiter_raw():
            seen += piece
            if len(split(seen)) >= cut:
                break
    return split(seen)[:cut]


# -- several followers ------------------------------------------------------------------------------


async def test_two_resumers_and_the_original_follow_one_live_stream_and_the_original_may_leave(
    serve: Serve,
) -> None:
    """With no grace: the request that started a stream leaves while two resumers follow it; the
    stream runs on for them, and each gets every event after its Last-Event-ID, in order, once."""
    scripted = _scripted(delay=0.02)
    url = serve(create_app([scripted]))
    results: dict[str, list[tuple[int, bytes]]] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        seen = b""
        async with http.stream("POST", url + CHAT, json=BODY) as original:
            # Held in a name: a dropped iterator is finalized, which closes the connection at once.
            pieces = original.aiter_raw()
            async for piece in pieces:
                seen += piece
                if len(split(seen)) >= 2:
                    break
            completion_id = str(json.loads(split(seen)[0][1].removeprefix(b"data: "))["id"])
            joined = {"from-start": anyio.Event(), "after-1": anyio.Event()}

            async def follow(name: str, headers: dict[str, str]) -> None:
                body = b""
                async with http.stream("GET", f"{url}{CHAT}/{completion_id}", headers=SSE | headers) as reply:
                    assert reply.status_code == 200
                    async for piece in reply.aiter_raw():
                        body += piece
                        joined[name].set()
                results[name] = split(body)

            with anyio.fail_after(10):
                async with anyio.create_task_group() as group:
                    group.start_soon(follow, "from-start", {})
                    group.start_soon(follow, "after-1", {"last-event-id": "1"})
                    await joined["from-start"].wait()
                    await joined["after-1"].wait()
                    await original.aclose()  # the original client leaves; the resumers stay
    whole, tail = results["from-start"], results["after-1"]
    assert [event_id for event_id, _ in whole] == list(range(1, len(whole) + 1))
    assert tail == whole[1:]
    assert whole[-1][1] == b"data: [DONE]"
    assert _text(whole) == REPLY
    assert scripted.open_streams == 0


# -- Last-Event-ID and starting_after --------------------------------------------------------------


@pytest.mark.parametrize(
    "last_event_id",
    ["\N{SUPERSCRIPT TWO}", "1" * 5000],
    ids=["a-unicode-digit", "over-4300-digits"],
)
@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_a_last_event_id_that_is_no_number_python_can_read_is_a_400_not_a_500(
    serve: Serve, last_event_id: str, api: str
) -> None:
    """`_context.py` checks the id with str.isdigit(), which "²" passes and int() then refuses, and
    lets a 5,000-digit id through to int(), which refuses it too: both end as a 500."""
    url = serve(create_app([_scripted(delay=0)]))
    async with httpx.AsyncClient(timeout=10) as http:
        if api == "chat":
            reply = await http.post(url + CHAT, json=BODY)
            stream_id = json.loads(split(reply.content)[0][1].removeprefix(b"data: "))["id"]
            resume_url = f"{url}{CHAT}/{stream_id}"
        else:
            reply = await http.post(
                url + "/v1/responses", json={"model": "echo", "input": "hi", "stream": True}
            )
            created = split(reply.content)[0][1].partition(b"data: ")[2]
            resume_url = f"{url}/v1/responses/{json.loads(created)['response']['id']}?stream=true"
    # A fresh client: the server drops the connection after a 500.
    async with httpx.AsyncClient(timeout=10) as http:
        # Header values are latin-1 on the wire: "²" is the byte 0xB2.
        headers = {b"accept": b"text/event-stream", b"last-event-id": last_event_id.encode("latin-1")}
        resumed = await http.get(resume_url, headers=headers)
    assert resumed.status_code == 400, resumed.text
    assert resumed.json()["error"]["message"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("starting_after", "abc"),
        ("starting_after", "1.5"),
        ("starting_after", "9" * 5000),
        ("stream", "maybe"),
    ],
    ids=["word", "fraction", "5000-digits", "stream-maybe"],
)
async def test_a_bad_query_parameter_of_a_response_resume_is_a_400_in_the_openai_shape(
    serve: Serve, name: str, value: str
) -> None:
    """The query parameters of GET /v1/responses/{id} are checked by FastAPI, whose refusal is a 422
    ``{"detail": [...]}``: not the OpenAI error shape, which the official client reads."""
    url = serve(create_app([_scripted(delay=0)]))
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(url + "/v1/responses", json={"model": "echo", "input": "hi", "stream": True})
        created = split(reply.content)[0][1].partition(b"data: ")[2]
        response_id = json.loads(created)["response"]["id"]
        resumed = await http.get(
            f"{url}/v1/responses/{response_id}", params={"stream": "true", "starting_after": "0", name: value}
        )
    assert resumed.status_code == 400, resumed.text
    assert resumed.json()["error"]["param"] == name


# -- expiry ----------------------------------------------------------------------------------------


async def test_a_finished_stream_cannot_be_resumed_after_its_ttl_on_an_idle_server(serve: Serve) -> None:
    """Expired logs are swept only when a new stream starts (`Hub.start`), and `resume` does not look
    at the expiry: a server that goes quiet keeps every finished stream in memory, and replays it,
    for ever."""
    app = create_app([_scripted(delay=0)], resume_ttl=0.1)
    url = serve(app)
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(url + CHAT, json=BODY)
        completion_id = json.loads(split(reply.content)[0][1].removeprefix(b"data: "))["id"]
        await anyio.sleep(0.5)  # well past the TTL; no new stream starts
        late = await http.get(f"{url}{CHAT}/{completion_id}", headers=SSE)
    assert late.status_code == 404, "a stream replayed after its TTL"


async def test_a_finished_stream_is_dropped_after_its_ttl_though_no_request_comes(serve: Serve) -> None:
    """The issue: finished streams are "kept for a configurable TTL, then deleted". A server that
    goes idle after a burst of streams holds every event of them until the next stream starts."""
    app = create_app([_scripted(delay=0)], resume_ttl=0.1)
    url = serve(app)
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(3):
            await http.post(url + CHAT, json=BODY)
    with anyio.fail_after(5):
        while app.state.hub.logs:  # noqa: ASYNC110 - no event to wait on: the server keeps a dict
            await anyio.sleep(0.05)


# -- the resume grace, as the upstream server sees it ----------------------------------------------


def _slow_upstream(server: LoopbackServer, pieces: int = 200, delay: float = 0.03) -> iModel:
    chunks = [
        {
            "id": "u",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": f"w{n} "}, "finish_reason": None}],
        }
        for n in range(pieces)
    ]
    finish = {"id": "u", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    finish["choices"] = [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    server.default = Reply(pieces=sse([*chunks, finish]), delay=delay)
    return iModel(
        provider="openai", model="m", name="echo", base_url=server.url + "/v1", api_key="k", max_retries=0
    )


async def test_with_no_reconnect_within_the_grace_the_upstream_stream_is_closed(
    serve: Serve, server: LoopbackServer
) -> None:
    url = serve(create_app([_slow_upstream(server)], resume_grace=0.3))
    async with httpx.AsyncClient(timeout=10) as http:
        await _open_and_cut(http, url, 3)
    (upstream,) = server.requests
    closed = await anyio.to_thread.run_sync(upstream.disconnected.wait, 5)
    assert closed, "the upstream stream ran on after the grace ended"
    assert not upstream.completed.is_set()


async def test_a_reconnect_within_the_grace_keeps_the_upstream_stream_open_to_its_end(
    serve: Serve, server: LoopbackServer
) -> None:
    url = serve(create_app([_slow_upstream(server, pieces=40)], resume_grace=5))
    async with httpx.AsyncClient(timeout=10) as http:
        completion_id, first = await _open_and_cut(http, url, 3)
        headers = SSE | {"last-event-id": str(first[-1][0])}
        with anyio.fail_after(10):
            rest = await http.get(f"{url}{CHAT}/{completion_id}", headers=headers)
    (upstream,) = server.requests
    # (the server's thread marks the reply complete just after its last write, which may be read first)
    assert await anyio.to_thread.run_sync(upstream.completed.wait, 5)
    assert not upstream.disconnected.is_set()
    assert _text(first + split(rest.content)) == "".join(f"w{n} " for n in range(40))


async def test_the_grace_starts_again_each_time_the_last_follower_leaves(serve: Serve) -> None:
    """A client leaves, comes back within the grace, and leaves again: the stream has the whole grace
    from the second leaving. `Hub._cancel_unless_followed` only asks whether anyone follows when its
    sleep ends, so the first leaving's timer, still pending, cancels the stream early."""
    grace = 2.0
    scripted = _scripted(delay=0.1)  # about 5 s of answer
    url = serve(create_app([scripted], resume_grace=grace))
    async with httpx.AsyncClient(timeout=10) as http:
        completion_id, first = await _open_and_cut(http, url, 2)  # the first leaving: t0
        await anyio.sleep(grace * 0.6)
        resume_url = f"{url}{CHAT}/{completion_id}"
        again = await _resume_and_cut(http, resume_url, after=first[-1][0], cut=1)  # t0 + 0.6 grace
        # The first timer fires at t0 + grace; the second leaving's grace lasts to t0 + 1.6 grace.
        await anyio.sleep(grace * 0.6)
        with anyio.fail_after(10):
            rest = await http.get(resume_url, headers=SSE | {"last-event-id": str(again[-1][0])})
    events = first + again + split(rest.content)
    assert [event_id for event_id, _ in events] == list(range(1, len(events) + 1))
    assert events[-1][1] == b"data: [DONE]", "the stream was cancelled within the grace"
    assert _text(events) == REPLY


# -- shutdown with a live stream --------------------------------------------------------------------


async def test_lionflow_serve_stops_promptly_while_a_client_follows_a_long_stream(
    server: LoopbackServer,
) -> None:
    """Asked to stop (SIGINT, as Ctrl-C), uvicorn waits for open responses to end before it runs the
    lifespan's shutdown, which is where the hub cancels its streams; with no graceful-shutdown
    timeout, a client following a long stream keeps `lionflow serve` running until it ends."""
    _slow_upstream(server, pieces=200, delay=0.1)  # 20 s of answer
    env = {"OPENAI_BASE_URL": server.url + "/v1", "OPENAI_API_KEY": "k"}
    with serve_process("--model", "up=openai:m", env=env) as (process, base_url):
        async with httpx.AsyncClient(timeout=30) as http:
            # The address is printed once bound, before uvicorn listens on it (after the lifespan
            # started): until then a connection is refused.
            with anyio.fail_after(10):
                while True:
                    try:
                        await http.get(base_url.removesuffix("/v1") + "/healthz")
                        break
                    except httpx.ConnectError:
                        await anyio.sleep(0.05)
            body = {**BODY, "model": "up"}
            async with http.stream("POST", base_url + "/chat/completions", json=body) as reply:
                pieces = reply.aiter_raw()  # held: a dropped iterator would hang up at once
                async for piece in pieces:
                    if b"data: " in piece:
                        break
                process.send_signal(signal.SIGINT)
                try:
                    await anyio.to_thread.run_sync(lambda: process.wait(5))
                except subprocess.TimeoutExpired:
                    pytest.fail("lionflow serve still running 5 s after SIGINT, a stream being live")


# -- the event structure of mixed answers -----------------------------------------------------------

_CALLS = [
    {"id": "call_a", "name": "lookup", "arguments": {"q": "one"}},
    {"id": "call_b", "name": "lookup", "arguments": {"q": "two"}},
]


def _mixed_model() -> ScriptedModel:
    return ScriptedModel(
        name="echo",
        responses=["some text here"] * 4,
        reasoning="thinking it over",
        tool_calls=_CALLS,
        chunk_size=3,
    )


def _named_events(raw: bytes) -> list[tuple[int, str, dict[str, Any]]]:
    """(id, event name, payload) of each named event; every event must have an id, 1, 2, 3, ..."""
    events = []
    for block in raw.split(b"\n\n"):
        if not block or block.startswith(b":"):
            continue
        fields = dict(line.split(": ", 1) for line in block.decode().split("\n"))
        assert "id" in fields, block
        events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    assert [event_id for event_id, _, _ in events] == list(range(1, len(events) + 1))
    return events


async def test_a_mixed_anthropic_stream_opens_and_closes_each_block_in_order(serve: Serve) -> None:
    url = serve(create_app([_mixed_model()]))
    body = {
        "model": "echo",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(url + "/v1/messages", json=body)
    events = _named_events(reply.content)
    open_block: int | None = None
    started: list[str] = []
    for _, name, payload in events:
        if name == "content_block_start":
            assert open_block is None
            assert payload["index"] == len(started)
            open_block = payload["index"]
            started.append(payload["content_block"]["type"])
        elif name == "content_block_delta":
            assert payload["index"] == open_block
        elif name == "content_block_stop":
            assert payload["index"] == open_block
            open_block = None
    assert started == ["thinking", "text", "tool_use", "tool_use"]
    assert [name for _, name, _ in events][-2:] == ["message_delta", "message_stop"]
    async with (
        anthropic.AsyncAnthropic(base_url=url, api_key="unused") as client,
        client.messages.stream(
            model="echo", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        final = await stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert [block.input for block in final.content if block.type == "tool_use"] == [
        {"q": "one"},
        {"q": "two"},
    ]
    assert final.stop_reason == "tool_use"


async def test_a_mixed_responses_stream_nests_its_events_in_open_items(serve: Serve) -> None:
    url = serve(create_app([_mixed_model()]))
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(url + "/v1/responses", json={"model": "echo", "input": "hi", "stream": True})
    events = _named_events(reply.content)
    assert [payload["sequence_number"] for _, _, payload in events] == list(range(len(events)))
    open_item: int | None = None
    added: list[str] = []
    for _, name, payload in events:
        if name == "response.output_item.added":
            assert open_item is None
            assert payload["output_index"] == len(added)
            open_item = payload["output_index"]
            added.append(payload["item"]["type"])
        elif name == "response.output_item.done":
            assert payload["output_index"] == open_item
            open_item = None
        elif "output_index" in payload:
            assert payload["output_index"] == open_item, (name, payload)
    assert added == ["reasoning", "message", "function_call", "function_call"]
    final = events[-1][2]["response"]
    assert events[-1][1] == "response.completed"
    calls = [item for item in final["output"] if item["type"] == "function_call"]
    assert [json.loads(call["arguments"]) for call in calls] == [{"q": "one"}, {"q": "two"}]


# -- bad input on /v1/messages and /v1/responses: property-based -----------------------------------

_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _dicts(keys: list[str], types: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with some of `keys`, `type` drawn from `types`, the rest junk."""
    return st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(types), _junk)}, optional=dict.fromkeys(keys, _junk)
    )


_block = _dicts(
    ["text", "id", "name", "input", "tool_use_id", "content", "thinking", "source"],
    ["text", "tool_use", "tool_result", "thinking", "image", "document", "x"],
)
_anthropic_message = st.fixed_dictionaries(
    {"role": st.one_of(st.sampled_from(["user", "assistant", "system"]), _junk)},
    optional={
        "content": st.one_of(st.text(max_size=8), st.lists(st.one_of(_block, _junk), max_size=3), _junk)
    },
)
_SDK_FIELDS = ["timeout", "extra_headers", "extra_query", "extra_body", "api_key", "base_url"]
_anthropic_fields: dict[str, st.SearchStrategy[Any]] = {
    "system": st.one_of(_junk, st.lists(st.one_of(_block, _junk), max_size=2)),
    "stop_sequences": _junk,
    "temperature": _junk,
    "top_p": _junk,
    "top_k": _junk,
    "tools": st.one_of(
        _junk, st.lists(_dicts(["name", "input_schema", "description"], ["custom", "x"]), max_size=2)
    ),
    "tool_choice": st.one_of(_junk, _dicts(["name"], ["auto", "any", "tool", "none", "x"])),
    "metadata": _junk,
    "thinking": _junk,
    **dict.fromkeys(_SDK_FIELDS, _junk),
}
_anthropic_bodies = st.fixed_dictionaries(
    {
        "model": st.one_of(st.just("up"), _junk),
        "max_tokens": st.one_of(st.just(16), _junk),
        "messages": st.one_of(
            st.just([{"role": "user", "content": "hi"}]),
            st.lists(_anthropic_message, min_size=1, max_size=3),
            _junk,
        ),
        "stream": st.booleans(),
    },
    optional=_anthropic_fields,
)
_item = _dicts(
    ["role", "content", "call_id", "name", "arguments", "output", "id", "summary"],
    ["message", "function_call", "function_call_output", "reasoning", "x"],
)
_responses_fields: dict[str, st.SearchStrategy[Any]] = {
    "instructions": _junk,
    "max_output_tokens": _junk,
    "temperature": _junk,
    "top_p": _junk,
    "tools": st.one_of(
        _junk,
        st.lists(_dicts(["name", "parameters", "strict", "description"], ["function", "x"]), max_size=2),
    ),
    "tool_choice": st.one_of(
        _junk, _dicts(["name"], ["function", "x"]), st.sampled_from(["auto", "none", "required"])
    ),
    "text": st.one_of(
        _junk,
        st.fixed_dictionaries(
            {
                "format": st.one_of(
                    _junk, _dicts(["schema", "name", "strict"], ["text", "json_object", "json_schema", "x"])
                )
            }
        ),
    ),
    "store": _junk,
    "metadata": _junk,
    "user": _junk,
    "reasoning": _junk,
    "include": _junk,
    "previous_response_id": _junk,
    "background": _junk,
    **dict.fromkeys(_SDK_FIELDS, _junk),
}
_responses_bodies = st.fixed_dictionaries(
    {
        "model": st.one_of(st.just("up"), _junk),
        "input": st.one_of(st.just("hi"), st.lists(st.one_of(_item, _junk), min_size=1, max_size=3), _junk),
        "stream": st.booleans(),
    },
    optional=_responses_fields,
)


def _fuzz(path: str, bodies: st.SearchStrategy[dict[str, Any]]) -> None:
    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        derandomize=bool(os.environ.get("CI")),
    )
    @given(body=bodies)
    def check(body: dict[str, Any], *, url: str) -> None:
        # A fresh connection each time: after a 500 the server drops the connection.
        with httpx.Client(timeout=10) as http:
            try:
                reply = http.post(url + path, content=json.dumps(body).encode())
            except httpx.TimeoutException:
                pytest.fail(f"no answer within the bound for {body!r}")
        # 502/504: the upstream's answer judged; a 500 is the server's own failure on bad input.
        assert reply.status_code < 500 or reply.status_code in (502, 504), (body, reply.text)
        if reply.status_code != 200:
            assert "error" in reply.json(), reply.text
        # What steers the SDK call (timeout, extra_body, another key or URL) is refused, whatever its value.
        if any(name in body for name in _SDK_FIELDS):
            assert reply.status_code != 200, body

    with LoopbackServer() as upstream:
        _slow_upstream(upstream, pieces=2, delay=0)
        model = iModel(
            provider="openai", model="m", name="up", base_url=upstream.url + "/v1", api_key="k", max_retries=0
        )
        with serving(create_app([model])) as url:
            check(url=url)


def test_fuzzed_messages_bodies_are_never_a_500_nor_a_hang() -> None:
    _fuzz("/v1/messages", _anthropic_bodies)


def test_fuzzed_responses_bodies_are_never_a_500_nor_a_hang() -> None:
    _fuzz("/v1/responses", _responses_bodies)
