"""Two servers sharing one PostgreSQL database (`create_app(store=PostgresStore(...))`), reached with
the official OpenAI client: what one answered, the other retrieves and continues."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import anyio
import httpx
import openai
import pytest
from fastapi import FastAPI

from lionflow import PostgresStore, Session
from lionflow.serve import create_app
from tests.serve.conftest import echo_model, serving
from tests.session.conftest import PostgresStores

pytestmark = pytest.mark.anyio


@pytest.fixture
def serve() -> Iterator[Callable[[FastAPI], str]]:
    """``serve(app)``: the base URL of `app` served for the rest of the test."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(serving(app))


def _texts(session: Session, branch: str) -> list[tuple[str, str]]:
    return [(message.role, message.chat_msg["content"]) for message in session.get_branch(branch).messages]


async def test_a_completion_streamed_by_one_server_is_retrieved_from_another(
    serve: Callable[[FastAPI], str], postgres_stores: PostgresStores
) -> None:
    first_store, second_store = postgres_stores.open(), postgres_stores.open()
    first = openai.AsyncOpenAI(
        base_url=f"{serve(create_app([echo_model()], store=first_store))}/v1", api_key="x"
    )
    second = openai.AsyncOpenAI(
        base_url=f"{serve(create_app([echo_model()], store=second_store))}/v1", api_key="x"
    )
    messages: list[Any] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    stream = await first.chat.completions.create(model="echo", messages=messages, stream=True)
    chunks = [chunk async for chunk in stream]
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    stored = await second.chat.completions.retrieve(chunks[0].id)
    assert stored.choices[0].message.content == streamed == "re: hello"
    async with PostgresStore(postgres_stores.dsn) as reader:
        session = await Session.load(reader, chunks[0].id)
    assert _texts(session, chunks[0].id) == [
        ("system", "Be brief."),
        ("user", "hello"),
        ("assistant", "re: hello"),
    ]
    for client in (first, second):
        await client.close()
    for store in (first_store, second_store):
        await store.aclose()


async def test_a_response_from_one_server_is_continued_on_another(
    serve: Callable[[FastAPI], str], postgres_stores: PostgresStores
) -> None:
    first_store, second_store = postgres_stores.open(), postgres_stores.open()
    first = openai.AsyncOpenAI(
        base_url=f"{serve(create_app([echo_model()], store=first_store))}/v1", api_key="x"
    )
    second = openai.AsyncOpenAI(
        base_url=f"{serve(create_app([echo_model()], store=second_store))}/v1", api_key="x"
    )
    one = await first.responses.create(model="echo", input="one", instructions="Be brief.")
    two = await second.responses.create(model="echo", input="two", previous_response_id=one.id)
    three = await first.responses.create(model="echo", input="three", previous_response_id=two.id)
    assert (two.output_text, three.output_text) == ("re: two", "re: three")

    again = await second.responses.retrieve(three.id)
    assert (again.output_text, again.status, again.previous_response_id) == ("re: three", "completed", two.id)
    async with PostgresStore(postgres_stores.dsn) as reader:
        session = await Session.load(reader, one.id)
    assert _texts(session, one.id)[1:] == [
        ("user", "one"),
        ("assistant", "re: one"),
        ("user", "two"),
        ("assistant", "re: two"),
        ("user", "three"),
        ("assistant", "re: three"),
    ]
    for client in (first, second):
        await client.close()
    for store in (first_store, second_store):
        await store.aclose()


async def test_a_stream_one_server_sent_is_replayed_by_another_after_any_event(
    serve: Callable[[FastAPI], str], postgres_stores: PostgresStores
) -> None:
    first_store, second_store = postgres_stores.open(), postgres_stores.open()
    first = serve(create_app([echo_model()], store=first_store)) + "/v1/chat/completions"
    second = serve(create_app([echo_model()], store=second_store)) + "/v1/chat/completions"
    body = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}], "stream": True}
    async with httpx.AsyncClient(timeout=10) as http:
        sent = (await http.post(first, json=body)).content
        events = [event for event in sent.split(b"\n\n") if event.startswith(b"id: ")]
        completion_id = json.loads(events[0].split(b"data: ", 1)[1])["id"]
        with anyio.fail_after(10):  # the first server writes its streams' events in batches
            while True:
                stored = await second_store.load_events(completion_id)
                if stored is not None and stored.ended:
                    break
                await anyio.sleep(0.05)
        replay = await http.get(
            f"{second}/{completion_id}", headers={"accept": "text/event-stream", "last-event-id": "2"}
        )
        assert replay.status_code == 200
    replayed = [event for event in replay.content.split(b"\n\n") if event.startswith(b"id: ")]
    assert replayed == events[2:]  # from the third event on: no gap, no duplicate
    for store in (first_store, second_store):
        await store.aclose()
