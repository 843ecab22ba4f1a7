"""A server with a store records every turn it answers and keeps every answer under its id: the
official clients retrieve stored completions and responses, continue a response (forking its
branch when they continue an earlier one), run one in the background and cancel it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx
import openai
import pytest
from fastapi import FastAPI

from lionflow.serve import create_app
from lionflow.session import Session, SQLiteStore
from lionflow.session.messages.content import AssistantResponseContent
from lionflow.testing import ScriptedModel
from tests.serve.conftest import echo_model, hang_up_mid_stream, serving

pytestmark = pytest.mark.anyio

Serve = Callable[[FastAPI], str]


def _texts(session: Session, branch: str) -> list[tuple[str, str]]:
    return [(message.role, message.chat_msg["content"]) for message in session.get_branch(branch).messages]


async def test_a_streamed_chat_completion_is_a_stored_turn_and_retrievable_by_its_id(
    serve: Serve, store: SQLiteStore
) -> None:
    url = serve(create_app([echo_model()], store=store))
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]
    stream = await client.chat.completions.create(model="echo", messages=messages, stream=True)
    chunks = [chunk async for chunk in stream]
    completion_id = chunks[0].id
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    stored = await client.chat.completions.retrieve(completion_id)
    assert stored.id == completion_id
    assert stored.choices[0].message.content == streamed == "re: second"

    session = await Session.load(store, completion_id)  # no user: a session of its own
    assert _texts(session, completion_id) == [
        ("system", "Be brief."),
        ("user", "first"),
        ("assistant", "ok"),
        ("user", "second"),
        ("assistant", "re: second"),
    ]
    await client.close()
    await store.aclose()


async def test_the_completions_of_one_user_are_branches_of_one_session(
    serve: Serve, store: SQLiteStore
) -> None:
    url = serve(create_app([echo_model()], store=store))
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
    ids = []
    for text in ("one", "two"):
        reply = await client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": text}], user="alice"
        )
        ids.append(reply.id)
    session = await Session.load(store, "user-alice")
    assert [branch.name for branch in session.branches] == ids
    assert _texts(session, ids[1]) == [("user", "two"), ("assistant", "re: two")]
    assert session.metadata == {"user": "alice"}
    await client.close()
    await store.aclose()


async def test_a_client_that_hangs_up_leaves_its_partial_turn_stored_as_incomplete(
    serve: Serve, store: SQLiteStore
) -> None:
    model = ScriptedModel(name="slow", responses=["x" * 400], chunk_size=4, delay=0.01)
    url = serve(create_app([model], store=store))
    body = {"model": "slow", "messages": [{"role": "user", "content": "go"}], "stream": True}
    async with httpx.AsyncClient(timeout=10) as http:
        completion_id = await hang_up_mid_stream(http, url, body)
        with anyio.fail_after(10):
            while True:  # recorded once the server has closed the call
                stored = await http.get(f"{url}/v1/chat/completions/{completion_id}")
                if stored.status_code == 200:
                    break
                await anyio.sleep(0.02)
    session = await Session.load(store, completion_id)
    answer = session.get_branch(completion_id).messages[-1].content
    assert isinstance(answer, AssistantResponseContent)
    assert answer.incomplete is True
    assert 0 < len(answer.assistant_response) < 400
    assert answer.assistant_response == "x" * len(answer.assistant_response)
    assert model.open_streams == 0
    await store.aclose()


async def test_previous_response_id_continues_the_branch_and_an_earlier_one_forks_it(
    serve: Serve, store: SQLiteStore
) -> None:
    model = echo_model()
    url = serve(create_app([model], store=store))
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
    first = await client.responses.create(model="echo", input="one", instructions="Be brief.")
    second = await client.responses.create(model="echo", input="two", previous_response_id=first.id)
    # `first` is no longer its branch's latest answer: continuing it again forks the branch.
    third = await client.responses.create(model="echo", input="three", previous_response_id=first.id)
    assert (first.to_dict()["store"], second.previous_response_id) == (True, first.id)

    # What the model saw: the conversation up to the response continued, and the new input.
    seen = [[(m["role"], m["content"]) for m in request.messages] for request in model.requests]
    assert seen[1] == [("user", "one"), ("assistant", "re: one"), ("user", "two")]
    assert seen[2] == [("user", "one"), ("assistant", "re: one"), ("user", "three")]

    session = await Session.load(store, first.id)
    assert [branch.name for branch in session.branches] == [first.id, third.id]
    assert _texts(session, first.id)[1:] == [
        ("user", "one"),
        ("assistant", "re: one"),
        ("user", "two"),
        ("assistant", "re: two"),
    ]
    assert _texts(session, third.id)[1:] == [
        ("user", "one"),
        ("assistant", "re: one"),
        ("user", "three"),
        ("assistant", "re: three"),
    ]
    again = await client.responses.retrieve(third.id)
    assert (again.output_text, again.status, again.previous_response_id) == (
        "re: three",
        "completed",
        first.id,
    )
    await client.close()
    await store.aclose()


async def test_a_streamed_response_is_stored_as_the_stream_ended_it(serve: Serve, store: SQLiteStore) -> None:
    url = serve(create_app([echo_model()], store=store))
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
    async with client.responses.stream(model="echo", input="hello") as stream:
        final = await stream.get_final_response()
    stored = await client.responses.retrieve(final.id)
    # (the stream helper's final response is a ParsedResponse: compared field by field)
    assert (stored.id, stored.status, stored.output_text) == (final.id, "completed", "re: hello")
    assert [item.to_dict()["id"] for item in stored.output] == [item.to_dict()["id"] for item in final.output]
    assert stored.usage == final.usage
    await client.close()
    await store.aclose()


async def test_store_false_keeps_nothing_and_is_said_in_the_response(
    serve: Serve, store: SQLiteStore
) -> None:
    url = serve(create_app([echo_model()], store=store))
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
    reply = await client.responses.create(model="echo", input="hi", store=False)
    assert reply.to_dict()["store"] is False
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(reply.id)
    assert await store.list_sessions() == []
    await client.close()
    await store.aclose()


async def test_a_background_response_runs_to_its_end_without_a_client(
    serve: Serve, store: SQLiteStore
) -> None:
    url = serve(create_app([echo_model(delay=0.005)], store=store))
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
    started = await client.responses.create(model="echo", input="later", background=True)
    assert (started.status, started.background) == ("in_progress", True)
    with anyio.fail_after(10):
        while (done := await client.responses.retrieve(started.id)).status == "in_progress":  # noqa: ASYNC110 - polls the server
            await anyio.sleep(0.02)
    assert (done.status, done.output_text) == ("completed", "re: later")
    await client.close()
    await store.aclose()


async def test_a_background_response_can_be_cancelled_and_keeps_what_it_had(
    serve: Serve, store: SQLiteStore
) -> None:
    model = ScriptedModel(name="slow", responses=["y" * 2000], chunk_size=2, delay=0.005)
    url = serve(create_app([model], store=store))
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
    started = await client.responses.create(model="slow", input="go", background=True)
    await anyio.sleep(0.1)
    cancelled = await client.responses.cancel(started.id)
    assert cancelled.status == "cancelled"
    session = await Session.load(store, started.id)
    answer = session.get_branch(started.id).messages[-1].content
    assert isinstance(answer, AssistantResponseContent)
    assert answer.incomplete is True
    assert 0 < len(answer.assistant_response) < 2000
    assert model.open_streams == 0
    await client.close()
    await store.aclose()


async def test_continuing_needs_a_stored_response_and_background_needs_a_store(
    serve: Serve, store: SQLiteStore
) -> None:
    stored_url = serve(create_app([echo_model()], store=store))
    bare_url = serve(create_app([echo_model()]))
    async with httpx.AsyncClient(timeout=10) as http:
        unknown = await http.post(
            f"{stored_url}/v1/responses",
            json={"model": "echo", "input": "x", "previous_response_id": "resp_no"},
        )
        assert unknown.status_code == 404
        assert unknown.json()["error"]["param"] == "previous_response_id"
        no_store = await http.post(
            f"{bare_url}/v1/responses",
            json={"model": "echo", "input": "x", "previous_response_id": "resp_no"},
        )
        assert no_store.status_code == 404
        assert "stores no responses" in no_store.json()["error"]["message"]
        background = await http.post(
            f"{bare_url}/v1/responses", json={"model": "echo", "input": "x", "background": True}
        )
        assert (background.status_code, background.json()["error"]["param"]) == (400, "background")
        not_stored = await http.post(
            f"{stored_url}/v1/responses",
            json={"model": "echo", "input": "x", "background": True, "store": False},
        )
        assert (not_stored.status_code, not_stored.json()["error"]["param"]) == (400, "background")
    await store.aclose()


async def test_an_anthropic_message_is_a_stored_turn_of_its_users_session(
    serve: Serve, store: SQLiteStore
) -> None:
    url = serve(create_app([echo_model()], store=store))
    client = anthropic.AsyncAnthropic(base_url=url, api_key="unused")
    async with client.messages.stream(
        model="echo",
        max_tokens=50,
        system="Be brief.",
        messages=[{"role": "user", "content": "hey"}],
        metadata={"user_id": "bob"},
    ) as stream:
        final = await stream.get_final_message()
    session = await Session.load(store, "user-bob")
    assert _texts(session, final.id) == [("system", "Be brief."), ("user", "hey"), ("assistant", "re: hey")]
    await client.close()
    await store.aclose()


async def test_a_stored_stream_replays_after_the_server_restarts(tmp_path: Path) -> None:
    path = tmp_path / "serve.db"
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with httpx.AsyncClient(timeout=10) as http:
        store = SQLiteStore(path)
        with serving(create_app([echo_model()], store=store)) as url:
            first = await http.post(f"{url}/v1/chat/completions", json=body)
        await store.aclose()
        # Another app (as after a restart) on the same database: the events come from the store.
        again = SQLiteStore(path)
        completion_id = first.text.split('"id":"', 1)[1].split('"', 1)[0]
        with serving(create_app([echo_model()], store=again)) as url:
            replay = await http.get(
                f"{url}/v1/chat/completions/{completion_id}",
                headers={"accept": "text/event-stream", "last-event-id": "2"},
            )
    events = [event for event in first.text.split("\n\n") if event]
    assert len(events) > 3
    assert replay.text.split("\n\n")[:-1] == events[2:]
    await again.aclose()


async def test_stream_events_are_deleted_after_their_ttl_and_do_not_pile_up(
    serve: Serve, tmp_path: Path
) -> None:
    path = tmp_path / "serve.db"
    store = SQLiteStore(path)
    url = serve(create_app([echo_model()], store=store, resume_ttl=0.3))
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    def rows() -> int:
        with sqlite3.connect(path) as raw:
            return int(raw.execute("SELECT count(*) FROM stream_events").fetchone()[0])

    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(3):
            for _ in range(10):
                await http.post(f"{url}/v1/chat/completions", json=body)
            with anyio.fail_after(10):
                while rows() == 0:  # noqa: ASYNC110 - written, batched, shortly after they were sent
                    await anyio.sleep(0.02)
            with anyio.fail_after(10):
                while rows() > 0:  # noqa: ASYNC110 - then dropped once their TTL is over
                    await anyio.sleep(0.05)
    await store.aclose()
