"""Resumable streams: every event has an id; a client that lost its connection asks for what came
after the last id it saw (``GET /v1/chat/completions/{id}`` with ``Last-Event-ID``) and gets exactly
that, replayed then live: no gap, no duplicate, wherever the cut falls."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import openai
import pytest
from fastapi import FastAPI

from lionflow.serve import create_app
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio

Serve = Callable[[FastAPI], str]
REPLY = "".join(f"word{n} " for n in range(40))
BODY: dict[str, Any] = {
    "model": "echo",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
SSE = {"accept": "text/event-stream"}


def model(delay: float = 0.005) -> ScriptedModel:
    return ScriptedModel(name="echo", responses=[REPLY] * 50, chunk_size=6, delay=delay)


def split(raw: bytes) -> list[tuple[int, bytes]]:
    """(id, event) of each event of a body; pings left out."""
    events = []
    for event in raw.split(b"\n\n"):
        if event.startswith(b"id: "):
            line, _, data = event.partition(b"\n")
            events.append((int(line.removeprefix(b"id: ")), data))
    return events


async def read_until(http: httpx.AsyncClient, url: str, cut: int) -> tuple[str, list[tuple[int, bytes]]]:
    """Stream a completion and hang up after `cut` events: its id and the events seen."""
    seen = b""
    async with http.stream("POST", url, json=BODY) as reply:
        async for piece in reply.aiter_raw():
            seen += piece
            if len(split(seen)) >= cut:
                break
    events = split(seen)[:cut]
    completion_id = _completion_id(events)
    return completion_id, events


def _completion_id(events: list[tuple[int, bytes]]) -> str:
    return str(json.loads(events[0][1].removeprefix(b"data: "))["id"])


async def whole_stream(http: httpx.AsyncClient, url: str) -> list[bytes]:
    reply = await http.post(url, json=BODY)
    return [data for _, data in split(reply.content)]


def _without_ids(events: list[bytes]) -> list[bytes]:
    # The completion id and creation time differ between two calls; the rest must not.
    result = []
    for data in events:
        payload = data.removeprefix(b"data: ")
        if payload == b"[DONE]":
            result.append(payload)
            continue
        fields = json.loads(payload)
        fields.pop("id"), fields.pop("created")
        result.append(json.dumps(fields, sort_keys=True).encode())
    return result


@pytest.mark.parametrize("seed", range(6))
async def test_a_reconnect_after_any_event_gets_the_rest_with_no_gap_and_no_duplicate(
    serve: Serve, seed: int
) -> None:
    base_url = serve(create_app([model()], resume_grace=10))
    url = base_url + "/v1/chat/completions"
    async with httpx.AsyncClient(timeout=10) as http:
        expected = await whole_stream(http, url)
        cut = random.Random(seed).randrange(1, len(expected))
        completion_id, first = await read_until(http, url, cut)
        # Reconnect while the stream may still be producing (the grace keeps it running).
        headers = SSE | {"last-event-id": str(first[-1][0])}
        rest = await http.get(f"{url}/{completion_id}", headers=headers)
    assert rest.status_code == 200
    resumed = first + split(rest.content)
    assert [event_id for event_id, _ in resumed] == list(range(1, len(expected) + 1))
    assert _without_ids([data for _, data in resumed]) == _without_ids(expected)


async def test_a_finished_stream_replays_from_any_point_and_from_the_start(serve: Serve) -> None:
    base_url = serve(create_app([model(delay=0)]))
    url = base_url + "/v1/chat/completions"
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(url, json=BODY)
        events = split(reply.content)
        completion_id = _completion_id(events)
        whole = await http.get(f"{url}/{completion_id}", headers=SSE)
        tail = await http.get(f"{url}/{completion_id}", headers=SSE | {"last-event-id": "5"})
        past_the_end = await http.get(f"{url}/{completion_id}", headers=SSE | {"last-event-id": "9999"})
    assert split(whole.content) == events
    assert split(tail.content) == events[5:]
    assert past_the_end.status_code == 200
    assert split(past_the_end.content) == []


async def test_without_grace_a_stream_left_by_its_client_stops_and_replays_what_it_sent(
    serve: Serve,
) -> None:
    scripted = model(delay=0.02)
    base_url = serve(create_app([scripted]))
    url = base_url + "/v1/chat/completions"
    async with httpx.AsyncClient(timeout=10) as http:
        completion_id, _ = await read_until(http, url, 3)
        with anyio.fail_after(5):
            # The model call was cancelled and its stream closed (a counter with no event to wait on).
            while scripted.open_streams:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        rest = await http.get(f"{url}/{completion_id}", headers=SSE | {"last-event-id": "3"})
    # What was produced before the stop, and no end marker: the answer was cut.
    replayed = split(rest.content)
    assert all(event_id > 3 for event_id, _ in replayed)
    assert b"data: [DONE]" not in [data for _, data in replayed]


async def test_unknown_streams_and_bad_ids_are_refused_in_the_openai_shape(serve: Serve) -> None:
    base_url = serve(create_app([model(delay=0)]))
    url = base_url + "/v1/chat/completions"
    async with httpx.AsyncClient(timeout=10) as http:
        unknown = await http.get(f"{url}/chatcmpl-nope", headers=SSE)
        completion_id = _completion_id(split((await http.post(url, json=BODY)).content))
        bad_id = await http.get(f"{url}/{completion_id}", headers=SSE | {"last-event-id": "x7"})
        not_sse = await http.get(f"{url}/{completion_id}")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert bad_id.status_code == 400
    assert not_sse.status_code == 404


async def test_finished_streams_are_dropped_after_their_ttl(serve: Serve) -> None:
    app = create_app([model(delay=0)], resume_ttl=0.2)
    base_url = serve(app)
    url = base_url + "/v1/chat/completions"
    async with httpx.AsyncClient(timeout=10) as http:
        old = [_completion_id(split((await http.post(url, json=BODY)).content)) for _ in range(5)]
        await anyio.sleep(0.4)
        await http.post(url, json=BODY)  # starting a stream drops the expired ones
        gone = [await http.get(f"{url}/{completion_id}", headers=SSE) for completion_id in old]
    assert [reply.status_code for reply in gone] == [404] * 5
    assert len(app.state.hub.logs) == 1  # the store of streams does not grow without bound


@pytest.mark.parametrize("cut", [1, 4, 9])
async def test_the_official_client_resumes_a_response_stream_starting_after_its_last_event(
    serve: Serve, cut: int
) -> None:
    base_url = serve(create_app([model()], resume_grace=10)) + "/v1"
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused") as client:
        stream = await client.responses.create(model="echo", input="hi", stream=True)
        first = []
        async for event in stream:
            first.append(event)
            if len(first) == cut:
                break
        await stream.close()
        response_id = first[0].response.id  # type: ignore[union-attr]  # response.created
        rest = await client.responses.retrieve(
            response_id, stream=True, starting_after=first[-1].sequence_number
        )
        events = first + [event async for event in rest]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == REPLY
