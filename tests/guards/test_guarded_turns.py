"""A guard that stops a turn: what is stored is what it let through, with content_filter and the
guard's name; a served stream ends with the API's own error event naming the guard."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from lionflow import Session, SQLiteStore
from lionflow.guards import OutputGuard, blocklist
from lionflow.operations import Builder, communicate, flow
from lionflow.serve import create_app
from lionflow.session.messages.content import AssistantResponseContent
from lionflow.testing import ScriptedModel
from tests.serve.conftest import serving

pytestmark = pytest.mark.anyio

Serve = Callable[[FastAPI], str]
WORD = "FORBIDDEN"
TEXT = "safe text " * 30 + WORD + " more text" * 30


@pytest.fixture
def serve() -> Iterator[Callable[[FastAPI], str]]:
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(serving(app))


def _guard() -> OutputGuard:
    return OutputGuard(blocklist([WORD]), name="no-word", window=40, overlap=len(WORD) - 1)


async def test_a_stopped_turn_is_stored_with_only_the_released_text_and_the_guards_name(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    session = Session(store=store)
    session.services.register(ScriptedModel(name="m", responses=[TEXT], chunk_size=7))
    branch = session.create_branch(name="chat")
    seen = ""
    async for chunk in communicate(
        session=session, branch=branch, parameters={"instruction": "go", "imodel": "m", "guards": [_guard()]}
    ):
        seen += str(chunk)
    await session.flush()
    stored = (await Session.load(store, session.id)).get_branch("chat").messages[-1]
    assert isinstance(stored.content, AssistantResponseContent)
    assert stored.content.finish_reason == "content_filter"
    assert stored.metadata["guard"]["name"] == "no-word"
    assert stored.content.assistant_response == seen
    assert WORD not in seen
    assert TEXT.startswith(seen)
    await store.aclose()


async def test_a_flow_step_takes_guards_too() -> None:
    session = Session()
    session.services.register(ScriptedModel(name="m", responses=[TEXT], chunk_size=5))
    builder = Builder(session=session)
    step = builder.communicate("go", imodel="m", guards=[_guard()])
    results = await flow(builder)
    assert results[step.id].finish_reason == "content_filter"
    assert WORD not in results[step.id].text


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
async def test_a_served_stream_stopped_by_a_guard_ends_with_the_apis_error_event(
    serve: Serve, api: str, tmp_path: Path
) -> None:
    model = ScriptedModel(name="m", responses=[TEXT], chunk_size=7, guards=[_guard()])
    store = SQLiteStore(tmp_path / "s.db")
    url = serve(create_app([model], store=store))
    messages = [{"role": "user", "content": "go"}]
    path, body = {
        "chat": ("/v1/chat/completions", {"model": "m", "messages": messages, "stream": True}),
        "responses": ("/v1/responses", {"model": "m", "input": "go", "stream": True}),
        "messages": ("/v1/messages", {"model": "m", "messages": messages, "max_tokens": 500, "stream": True}),
    }[api]
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        reply = await http.post(path, json=body)
    raw = reply.text
    assert WORD not in raw
    errors = [
        json.loads(line.removeprefix("data: "))
        for line in raw.splitlines()
        if line.startswith("data: ") and '"guardrails_violation"' in line
    ]
    assert len(errors) == 1
    error = errors[0]["error"]
    assert error["type"] == "guardrails_violation"
    assert "no-word" in error["message"]
    # the error is the stream's last event (chat completions: then the end marker)
    last = raw.rstrip().splitlines()[-1]
    assert last == "data: [DONE]" if api == "chat" else "guardrails_violation" in last
    # and the turn is stored as the guard left it
    (info,) = await store.list_sessions()
    answer = (await Session.load(store, info.id)).branches[0].messages[-1]
    assert isinstance(answer.content, AssistantResponseContent)
    assert answer.content.finish_reason == "content_filter"
    assert WORD not in answer.content.assistant_response
    await store.aclose()


def test_the_guarded_stream_example_runs() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "guarded_stream.py"
    result = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    shown, verdict = result.stdout.rstrip("\n").rsplit("\n", 1)
    assert verdict == "[content_filter: no-keys]"
    assert "PRIVATE" not in shown
    assert shown.startswith("Here is the configuration you asked for.")
