"""Stopping a stream on purpose: ``POST /v1/chat/completions/{id}/cancel`` and
``POST /v1/flows/runs/{run_id}/cancel`` cancel the model call now, even on a server that would let
a stream whose client left run on awaiting a reconnect (``resume_grace``). The playground's Stop
uses them. Real parts: the server over a socket, httpx, `ScriptedModel`, a SQLite store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from lionflow import Session
from lionflow.operations import Builder
from lionflow.serve import create_app
from lionflow.session import SQLiteStore
from lionflow.session.messages.content import AssistantResponseContent
from lionflow.testing import ScriptedModel
from tests.serve.conftest import serving

pytestmark = pytest.mark.anyio

Serve = Callable[[FastAPI], str]
LONG = "".join(f"word{n} " for n in range(400))  # 0.02 s a chunk: minutes if nothing stops it


def slow_model() -> ScriptedModel:
    return ScriptedModel(name="echo", responses=[LONG] * 3, chunk_size=4, delay=0.02)


async def first_event(lines: AsyncIterator[str]) -> dict[str, Any]:
    async for line in lines:
        if line.startswith("data: "):
            data: dict[str, Any] = json.loads(line.removeprefix("data: "))
            return data
    raise AssertionError("the stream ended before its first event")


async def test_cancel_stops_a_streamed_completion_now_and_stores_it_incomplete(tmp_path: Path) -> None:
    model = slow_model()
    store = SQLiteStore(tmp_path / "serve.db")
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    try:
        with serving(create_app([model], store=store, resume_grace=60)) as url:
            await cancel_mid_stream(model, store, url, body)
    finally:
        await store.aclose()


async def cancel_mid_stream(model: ScriptedModel, store: SQLiteStore, url: str, body: dict[str, Any]) -> None:
    """Start `body`'s stream, cancel it after its first event, and check what became of it."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        async with http.stream("POST", "/v1/chat/completions", json=body) as reply:
            lines = reply.aiter_lines()
            completion_id = (await first_event(lines))["id"]
            assert model.open_streams == 1
            with anyio.fail_after(10):
                cancelled = await http.post(f"/v1/chat/completions/{completion_id}/cancel")
            assert cancelled.status_code == 200
            assert cancelled.json() == {
                "id": completion_id,
                "object": "chat.completion.cancel",
                "cancelled": True,
            }
            # The provider stream is closed when the cancel answers, not after the grace.
            assert model.open_streams == 0
            # The follower's stream ends (it does not hang for the next chunk).
            with anyio.fail_after(10):
                rest = [line async for line in lines]
            assert "data: [DONE]" not in rest
        # Stored as soon as the cancel answered: the turn as far as it went, incomplete.
        session = await Session.load(store, completion_id)
        answer = session.get_branch(completion_id).messages[-1].content
        assert isinstance(answer, AssistantResponseContent)
        assert answer.incomplete is True
        assert 0 < len(answer.assistant_response) < len(LONG)
        assert LONG.startswith(answer.assistant_response)
        # Once ended, a second cancel says so; an unknown id is a 404 in the API's shape.
        again = await http.post(f"/v1/chat/completions/{completion_id}/cancel")
        assert again.json()["cancelled"] is False
        unknown = await http.post("/v1/chat/completions/chatcmpl-nothing/cancel")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "not_found"


async def test_cancel_needs_a_key_where_the_server_has_keys(serve: Serve) -> None:
    url = serve(create_app([slow_model()], api_keys=["the-key"]))
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        refused = await http.post("/v1/chat/completions/chatcmpl-x/cancel")
        assert refused.status_code == 401
        allowed = await http.post(
            "/v1/chat/completions/chatcmpl-x/cancel", headers={"authorization": "Bearer the-key"}
        )
        assert allowed.status_code == 404


async def test_cancel_stops_a_flow_run_now(serve: Serve) -> None:
    model = slow_model()

    def pipeline(session: Session) -> Builder:
        builder = Builder(session=session)
        first = builder.communicate("one", imodel="echo", name="first")
        builder.communicate("two", imodel="echo", name="second", depends_on=[first])
        return builder

    url = serve(create_app([model], flows={"pipeline": pipeline}, resume_grace=60))
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        async with http.stream("POST", "/v1/flows/pipeline/runs", json={}) as reply:
            lines = reply.aiter_lines()
            run_id = (await first_event(lines))["run_id"]
            with anyio.fail_after(10):
                async for line in lines:  # the first operation is streaming
                    if line == "event: operation.chunk":
                        break
                assert model.open_streams == 1
                cancelled = await http.post(f"/v1/flows/runs/{run_id}/cancel")
            assert cancelled.json() == {"id": run_id, "object": "flow.run.cancel", "cancelled": True}
            assert model.open_streams == 0
            with anyio.fail_after(10):
                events = [line async for line in lines if line.startswith("event: ")]
        # The run ends as cancelled, its operation too, and the second never started.
        assert events[-1] == "event: run.cancelled"
        assert "event: operation.cancelled" in events
        assert len(model.requests) == 1
        assert (await http.post("/v1/flows/runs/run_unknown/cancel")).status_code == 404
