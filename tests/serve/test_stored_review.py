"""A hostile review of the recording of served answers: concurrent continuations of one response,
stores that fail, streams of the store dropped while they live, odd user names."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import openai
import pytest
from fastapi import FastAPI

from lionflow.serve import create_app
from lionflow.session import SQLiteStore
from lionflow.session.stores.base import ServedRecord, wait_for
from lionflow.testing import ScriptedModel
from tests.serve.conftest import echo_model, serving

pytestmark = pytest.mark.anyio

Serve = Callable[[FastAPI], str]


async def test_many_concurrent_continuations_of_one_response_each_keep_the_history_they_answered(
    serve: Serve, store: SQLiteStore
) -> None:
    model = echo_model()
    url = serve(create_app([model], store=store))
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    first = await client.responses.create(model="echo", input="root")
    ids: dict[str, str] = {}

    async def continue_with(text: str) -> None:
        reply = await client.responses.create(model="echo", input=text, previous_response_id=first.id)
        ids[text] = reply.id

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for n in range(40):
                group.start_soon(continue_with, f"c{n}")
    # Continuing each one again: the model sees the root, that continuation, and nothing else.
    model.requests.clear()
    for text, reply_id in ids.items():
        await client.responses.create(model="echo", input="next", previous_response_id=reply_id)
        seen = [(m["role"], m["content"]) for m in model.requests[-1].messages]
        assert seen == [
            ("user", "root"),
            ("assistant", "re: root"),
            ("user", text),
            ("assistant", f"re: {text}"),
            ("user", "next"),
        ], text
    await client.close()
    await store.aclose()


def _events(text: str) -> list[str]:
    return [event for event in text.split("\n\n") if event]


def _ids(text: str) -> list[int]:
    return [int(event.split("\n", 1)[0].removeprefix("id: ")) for event in _events(text)]


async def test_a_closed_store_does_not_keep_answers_from_their_clients(serve: Serve, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "serve.db")
    await store.aclose()  # (its owner closed it while the server runs: every write now raises)
    url = serve(create_app([echo_model()], store=store))
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "user": "alice"}
    async with httpx.AsyncClient(timeout=10) as http:
        whole = await http.post(f"{url}/v1/chat/completions", json=chat)
        assert (whole.status_code, whole.json()["choices"][0]["message"]["content"]) == (200, "re: hi")
        streamed = await http.post(f"{url}/v1/chat/completions", json=chat | {"stream": True})
        assert streamed.status_code == 200
        assert "data: [DONE]" in streamed.text
        response = await http.post(f"{url}/v1/responses", json={"model": "echo", "input": "hi"})
        assert (response.status_code, response.json()["output"][0]["content"][0]["text"]) == (200, "re: hi")


async def test_a_store_that_cannot_be_read_is_an_error_in_the_apis_shape_naming_no_file(
    serve: Serve, tmp_path: Path
) -> None:
    path = tmp_path / "serve.db"
    path.write_bytes(b"this is not a database " * 200)
    store = SQLiteStore(path)
    url = serve(create_app([echo_model()], store=store))
    async with httpx.AsyncClient(timeout=10) as http:
        replies = [
            await http.get(f"{url}/v1/responses/resp_1"),
            await http.get(f"{url}/v1/chat/completions/chatcmpl-1"),
            await http.get(f"{url}/v1/chat/completions/chatcmpl-1", headers={"accept": "text/event-stream"}),
            await http.get(f"{url}/v1/responses/resp_1", params={"stream": "true"}),
            await http.post(f"{url}/v1/responses/resp_1/cancel"),
            await http.post(
                f"{url}/v1/responses", json={"model": "echo", "input": "x", "previous_response_id": "resp_1"}
            ),
        ]
        # The answer itself still reaches its client.
        answered = await http.post(f"{url}/v1/responses", json={"model": "echo", "input": "x"})
        assert answered.status_code == 200
    for reply in replies:
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"]["type"] == "server_error"
        assert str(tmp_path) not in reply.text
    await store.aclose()


async def test_a_slow_stream_is_not_dropped_from_the_store_while_it_runs(tmp_path: Path) -> None:
    # Silences longer than resume_ttl between events: the stream still lives, so its stored
    # events must not be dropped as expired, and it replays whole after a restart.
    path = tmp_path / "serve.db"
    slow = ScriptedModel(
        name="slow", responses=["abcdef"], chunk_size=2, delay=lambda index: 1.2 if index else 0.0
    )
    body = {"model": "slow", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with httpx.AsyncClient(timeout=20) as http:
        store = SQLiteStore(path)
        with serving(create_app([slow], store=store, resume_ttl=0.5)) as url:
            first = await http.post(f"{url}/v1/chat/completions", json=body)
        await store.aclose()
        again = SQLiteStore(path)
        completion_id = first.text.split('"id":"', 1)[1].split('"', 1)[0]
        with serving(create_app([echo_model()], store=again)) as url:
            replay = await http.get(
                f"{url}/v1/chat/completions/{completion_id}", headers={"accept": "text/event-stream"}
            )
    assert replay.status_code == 200
    assert _events(replay.text) == _events(first.text)
    await again.aclose()


async def test_a_stored_stream_with_a_lost_batch_replays_no_event_out_of_place(tmp_path: Path) -> None:
    # A batch that never reached the store (a failed write) leaves a hole: the replay after a
    # restart must stop short of it, never hand a client event 4 as the one after event 2.
    path = tmp_path / "serve.db"
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi there you"}], "stream": True}
    async with httpx.AsyncClient(timeout=10) as http:
        store = SQLiteStore(path)
        with serving(create_app([echo_model(chunk_size=1)], store=store)) as url:
            first = await http.post(f"{url}/v1/chat/completions", json=body)
        await store.aclose()
        with sqlite3.connect(path) as raw:
            raw.execute("DELETE FROM stream_events WHERE number = 3")
        again = SQLiteStore(path)
        completion_id = first.text.split('"id":"', 1)[1].split('"', 1)[0]
        with serving(create_app([echo_model()], store=again)) as url:
            replay = await http.get(
                f"{url}/v1/chat/completions/{completion_id}",
                headers={"accept": "text/event-stream", "last-event-id": "1"},
            )
    assert len(_events(first.text)) > 5
    assert _ids(replay.text) == [2]
    assert _events(replay.text) == _events(first.text)[1:2]
    await again.aclose()


async def test_a_response_a_killed_server_left_in_progress_is_not_in_progress_forever(
    serve: Serve, store: SQLiteStore
) -> None:
    # What a server killed while it ran a background response leaves: its record, in progress.
    url = serve(create_app([echo_model()], store=store))
    async with httpx.AsyncClient(timeout=10) as http:
        started = await http.post(f"{url}/v1/responses", json={"model": "echo", "input": "x"})
    left = started.json() | {"id": "resp_killed", "status": "in_progress", "background": True, "output": []}
    record = ServedRecord("resp_killed", "response", "s", "b", None, left, datetime.now(UTC))
    await wait_for(store.submit_served(record))

    url = serve(create_app([echo_model()], store=store))  # the server that came up after it
    async with httpx.AsyncClient(timeout=10) as http:
        polled = await http.get(f"{url}/v1/responses/resp_killed")
        continued = await http.post(
            f"{url}/v1/responses", json={"model": "echo", "input": "y", "previous_response_id": "resp_killed"}
        )
    # A client polling until the status changes (as for every background response) gets an end.
    assert polled.json()["status"] == "failed"
    assert "stopped" in polled.json()["error"]["message"]
    assert continued.status_code == 400
    assert "stopped" in continued.json()["error"]["message"]
    await store.aclose()
