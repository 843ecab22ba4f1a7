"""The stored sessions and the served flows, as the playground's panels read them: ``GET
/v1/sessions`` lists what the server recorded (most recently updated first), ``GET
/v1/sessions/{id}`` shows a session's branches and turns as ``lionflow sessions show`` does, and
``GET /v1/flows`` names the flows; all behind the API key, errors in the OpenAI shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import openai
import pytest
from fastapi import FastAPI

from lionflow.operations import Builder
from lionflow.serve import create_app
from lionflow.session import Session, SQLiteStore
from lionflow.session.messages import AssistantResponseContent, InstructionContent, Message
from lionflow.testing import ScriptedModel
from tests.serve.conftest import echo_model, hang_up_mid_stream

pytestmark = pytest.mark.anyio

Serve = Callable[[FastAPI], str]


async def _named_session(store: SQLiteStore) -> str:
    """A session named "notes" with one turn of an answer cut short, stored before the server runs."""
    session = Session(store=store, metadata={"name": "notes"})
    branch = session.create_branch("main")
    answer = AssistantResponseContent(
        assistant_response="Hel", provider="openai", model="gpt-4o", incomplete=True
    )
    await session.add_turn(
        branch,
        Message(content=InstructionContent(instruction="Say hello")),
        Message(content=answer),
    )
    await session.flush()
    return session.id


def _turns(session: dict[str, Any], branch: str) -> list[tuple[str, str, str]]:
    (found,) = [entry for entry in session["branches"] if entry["name"] == branch]
    return [(message["role"], message["label"], message["text"]) for message in found["messages"]]


async def test_served_completions_and_responses_are_listed_and_shown_with_their_turns(
    serve: Serve, store: SQLiteStore
) -> None:
    named = await _named_session(store)
    url = serve(create_app([echo_model()], store=store))
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
    completion = await client.chat.completions.create(
        model="echo",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "first"}],
    )
    response = await client.responses.create(model="echo", input="second")
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        listed = (await http.get("/v1/sessions")).json()
        assert listed["object"] == "list"
        # Most recently updated first: the response, the completion, then the session stored before.
        assert [entry["id"] for entry in listed["data"]] == [response.id, completion.id, named]
        first, second, third = listed["data"]
        assert (first["name"], first["branches"], first["messages"]) == (None, [response.id], 2)
        assert (second["branches"], second["messages"]) == ([completion.id], 3)
        assert (third["name"], third["branches"], third["messages"]) == ("notes", ["main"], 2)
        assert first["updated_at"] >= second["updated_at"] >= third["updated_at"]
        assert third["created_at"].endswith("+00:00")  # ISO 8601, with its zone

        shown = (await http.get(f"/v1/sessions/{completion.id}")).json()
        assert shown["id"] == completion.id
        assert shown["name"] is None
        turns = _turns(shown, completion.id)
        assert [(role, text) for role, _, text in turns] == [
            ("system", "Be brief."),
            ("user", "first"),
            ("assistant", "re: first"),
        ]
        answer = shown["branches"][0]["messages"][-1]
        assert answer["incomplete"] is False
        assert answer["model"] is not None
        assert answer["label"] == f"assistant ({answer['model']})"
        assert [message["model"] for message in shown["branches"][0]["messages"][:2]] == [None, None]

        replied = (await http.get(f"/v1/sessions/{response.id}")).json()
        assert [(role, text) for role, _, text in _turns(replied, response.id)] == [
            ("user", "second"),
            ("assistant", "re: second"),
        ]

        notes = (await http.get(f"/v1/sessions/{named}")).json()
        assert (notes["name"], notes["metadata"]) == ("notes", {"name": "notes"})
        assert _turns(notes, "main") == [
            ("user", "user", "Say hello"),
            ("assistant", "assistant (openai:gpt-4o, INCOMPLETE)", "Hel"),
        ]
        cut = notes["branches"][0]["messages"][1]
        assert (cut["model"], cut["incomplete"]) == ("openai:gpt-4o", True)
    await client.close()
    await store.aclose()


async def test_a_stream_its_client_hung_up_on_shows_as_an_incomplete_turn(
    serve: Serve, store: SQLiteStore
) -> None:
    model = ScriptedModel(name="slow", responses=["x" * 400], chunk_size=4, delay=0.01)
    url = serve(create_app([model], store=store))
    body = {"model": "slow", "messages": [{"role": "user", "content": "go"}], "stream": True}
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        completion_id = await hang_up_mid_stream(http, url, body)
        with anyio.fail_after(10):
            while True:  # the answer is recorded once the server has closed the call
                shown = await http.get(f"/v1/sessions/{completion_id}")
                messages = shown.json()["branches"][0]["messages"] if shown.status_code == 200 else []
                if [message["role"] for message in messages] == ["user", "assistant"]:
                    break
                await anyio.sleep(0.02)
        listed = (await http.get("/v1/sessions")).json()["data"]
    assert [(entry["id"], entry["messages"]) for entry in listed] == [(completion_id, 2)]
    answer = messages[-1]
    assert answer["incomplete"] is True
    assert answer["label"].endswith("INCOMPLETE)")
    assert 0 < len(answer["text"]) < 400
    assert answer["text"] == "x" * len(answer["text"])
    await store.aclose()


async def test_limit_keeps_the_most_recent_sessions_and_a_bad_one_is_a_400(
    serve: Serve, store: SQLiteStore
) -> None:
    url = serve(create_app([echo_model()], store=store))
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
    ids = [(await client.responses.create(model="echo", input=f"n{n}")).id for n in range(3)]
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        two = (await http.get("/v1/sessions", params={"limit": 2})).json()["data"]
        assert [entry["id"] for entry in two] == ids[::-1][:2]
        for bad in ("0", "1001", "x", "-1"):
            refused = await http.get("/v1/sessions", params={"limit": bad})
            assert refused.status_code == 400, bad
            assert refused.json()["error"]["param"] == "limit"
            assert "1 to 1000" in refused.json()["error"]["message"]
    await client.close()
    await store.aclose()


async def test_without_a_store_the_sessions_are_a_404_that_says_to_start_with_db(serve: Serve) -> None:
    url = serve(create_app([echo_model()]))
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for path in ("/v1/sessions", "/v1/sessions/abc"):
            answer = await http.get(path)
            assert answer.status_code == 404, path
            error = answer.json()["error"]
            assert (error["code"], error["type"]) == ("no_store", "invalid_request_error")
            assert "--db" in error["message"]
            assert "keeps no sessions" in error["message"]


async def test_an_unknown_session_is_a_404(serve: Serve, store: SQLiteStore) -> None:
    url = serve(create_app([echo_model()], store=store))
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        answer = await http.get("/v1/sessions/no-such-session")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "session_not_found"
        assert (await http.get("/v1/sessions")).json() == {"object": "list", "data": []}
    await store.aclose()


def _build(session: Session) -> Builder:
    builder = Builder(session=session)
    builder.communicate("hi", imodel="echo", name="greet")
    return builder


async def test_the_flows_are_listed_in_the_order_given(serve: Serve) -> None:
    with_flows = serve(create_app([echo_model()], flows={"zeta": _build, "alpha": _build}))
    without = serve(create_app([echo_model()]))
    async with httpx.AsyncClient(timeout=10) as http:
        listed = (await http.get(f"{with_flows}/v1/flows")).json()
        assert listed == {
            "object": "list",
            "data": [{"id": "zeta", "object": "flow"}, {"id": "alpha", "object": "flow"}],
        }
        assert (await http.get(f"{without}/v1/flows")).json() == {"object": "list", "data": []}


async def test_sessions_and_flows_need_the_api_key_when_one_is_configured(
    serve: Serve, store: SQLiteStore
) -> None:
    named = await _named_session(store)
    url = serve(create_app([echo_model()], store=store, flows={"greet": _build}, api_keys=["sk-test"]))
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for path in ("/v1/sessions", f"/v1/sessions/{named}", "/v1/flows"):
            refused = await http.get(path)
            assert refused.status_code == 401, path
            assert refused.json()["error"]["code"] == "invalid_api_key"
            wrong = await http.get(path, headers={"Authorization": "Bearer sk-wrong"})
            assert wrong.status_code == 401, path
            allowed = await http.get(path, headers={"Authorization": "Bearer sk-test"})
            assert allowed.status_code == 200, path
        shown = await http.get(f"/v1/sessions/{named}", headers={"x-api-key": "sk-test"})
        assert shown.json()["name"] == "notes"
    await store.aclose()
