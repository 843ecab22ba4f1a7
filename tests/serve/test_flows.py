"""Flows over HTTP: ``POST /v1/flows/{name}/runs`` streams a workflow's run as SSE events tagged by
operation, records it as a session of the store, stops it when its client leaves, and resumes it with
``GET /v1/flows/runs/{run_id}`` and ``Last-Event-ID``. A real server, httpx reading the raw events,
`ScriptedModel`s behind it."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from lionflow import Chunk, ConfigurationError, Session, SQLiteStore
from lionflow.operations import Builder
from lionflow.serve import create_app
from lionflow.session.messages import AssistantResponseContent
from lionflow.testing import ScriptedModel
from tests.serve.conftest import serving
from tests.serve.test_resume import split

pytestmark = pytest.mark.anyio

Serve = Callable[[FastAPI], str]
IDEAS = "1. Walk daily. 2. Sleep well. 3. Eat greens."
ARTICLE = "".join(f"word{n} " for n in range(30))
Event = tuple[int, str, dict[str, Any]]


def writer(**options: Any) -> ScriptedModel:
    options.setdefault("responses", [IDEAS, ARTICLE] * 10)
    return ScriptedModel(name="writer", chunk_size=6, **options)


def two_steps(session: Session) -> Builder:
    """Ideas on the topic the request names, then an article written from them."""
    topic = session.metadata["inputs"].get("topic", "health")
    builder = Builder(session=session)
    ideas = builder.communicate(f"List ideas about {topic}", imodel="writer", branch="ideas", name="ideas")
    builder.communicate(
        "Write the article", imodel="writer", branch="article", name="article", context_from=[ideas]
    )
    return builder


def parse(raw: bytes) -> list[Event]:
    """(id, event name, data) of each event of a body."""
    events = []
    for event_id, rest in split(raw):
        name, _, data = rest.partition(b"\n")
        assert name.startswith(b"event: "), rest
        events.append(
            (event_id, name.removeprefix(b"event: ").decode(), json.loads(data.removeprefix(b"data: ")))
        )
    return events


def text_of(events: list[Event], name: str) -> str:
    return "".join(
        data["chunk"]["data"]
        for _, kind, data in events
        if kind == "operation.chunk" and data["name"] == name and data["chunk"]["type"] == "text"
    )


async def run_flow(url: str, body: Any = None) -> list[Event]:
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(f"{url}/v1/flows/two/runs", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    return parse(reply.content)


async def test_a_run_streams_each_operations_events_in_order_tagged(serve: Serve) -> None:
    model = writer()
    url = serve(create_app([model], flows={"two": two_steps}))
    events = await run_flow(url, {"inputs": {"topic": "exercise"}})

    assert [event_id for event_id, _, _ in events] == list(range(1, len(events) + 1))
    first, last = events[0], events[-1]
    assert first[1] == "run.started"
    run_id, session_id = first[2]["run_id"], first[2]["session_id"]
    assert run_id.startswith("run_")
    assert first[2]["flow"] == "two"
    assert all(data["run_id"] == run_id for _, _, data in events)

    operations = [data for _, kind, data in events if kind.startswith("operation.")]
    ids = {data["name"]: data["operation"] for data in operations}
    for name in ("ideas", "article"):
        kinds = [kind for _, kind, data in events if kind.startswith("operation.") and data["name"] == name]
        assert all(data["operation"] == ids[name] for data in operations if data["name"] == name)
        assert kinds[0] == "operation.started"
        assert kinds[-1] == "operation.completed"
        assert set(kinds[1:-1]) == {"operation.chunk"}
    tagged = [(kind, data.get("name")) for _, kind, data in events]
    # The article depends on the ideas: it starts only once they completed.
    assert tagged.index(("operation.completed", "ideas")) < tagged.index(("operation.started", "article"))

    assert text_of(events, "ideas") == IDEAS
    assert text_of(events, "article") == ARTICLE
    completed = {data["name"]: data["result"] for _, kind, data in events if kind == "operation.completed"}
    assert completed["ideas"]["text"] == IDEAS
    assert completed["article"]["text"] == ARTICLE
    assert completed["article"]["finish_reason"] == "stop"
    assert completed["article"]["usage"]["output_tokens"] == 30
    chunks = [Chunk.model_validate(data["chunk"]) for _, kind, data in events if kind == "operation.chunk"]
    assert [chunk.type for chunk in chunks].count("finish") == 2

    assert last[1] == "run.completed"
    assert last[2]["session_id"] == session_id
    assert sorted(last[2]["completed"]) == sorted(ids.values())
    assert last[2]["failed"] == last[2]["skipped"] == last[2]["cancelled"] == []
    # The inputs reached the build; the first answer reached the second step's prompt.
    assert "exercise" in model.requests[0].messages[-1]["content"]
    assert IDEAS in model.requests[1].messages[-1]["content"]


async def test_a_run_with_a_store_is_recorded_as_its_session(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    try:
        with serving(create_app([writer()], flows={"two": two_steps}, store=store)) as url:
            events = await run_flow(url, {"inputs": {"topic": "sleep"}})
    finally:
        await store.aclose()
    assert events[-1][1] == "run.completed"
    run_id, session_id = events[0][2]["run_id"], events[0][2]["session_id"]

    async with SQLiteStore(tmp_path / "x.db") as reader:
        session = await Session.load(reader, session_id)
    assert session.metadata == {"flow": "two", "run_id": run_id, "inputs": {"topic": "sleep"}}
    for branch, text in (("ideas", IDEAS), ("article", ARTICLE)):
        question, answer = session.get_branch(branch).messages
        assert question.role == "user"
        assert isinstance(answer.content, AssistantResponseContent)
        assert answer.content.assistant_response == text
        assert not answer.content.incomplete


async def _stored_answer(db: Path, session_id: str, branch: str) -> AssistantResponseContent:
    """The answer of `branch`'s turn once the store has it."""
    with anyio.fail_after(5):
        while True:
            async with SQLiteStore(db) as reader:
                session = await Session.load(reader, session_id)
            messages = session.get_branch(branch).messages if session.has_branch(branch) else []
            if len(messages) == 2:
                content = messages[1].content
                assert isinstance(content, AssistantResponseContent)
                return content
            await anyio.sleep(0.02)


async def test_a_client_that_leaves_cancels_the_run_and_the_partial_turn_is_stored(tmp_path: Path) -> None:
    model = writer(responses=[ARTICLE * 4] * 2, delay=0.01)
    store = SQLiteStore(tmp_path / "x.db")
    try:
        with serving(create_app([model], flows={"two": two_steps}, store=store)) as url:
            async with httpx.AsyncClient(timeout=10) as http:
                seen = b""
                async with http.stream("POST", f"{url}/v1/flows/two/runs") as reply:
                    async for piece in reply.aiter_raw():
                        seen += piece
                        if sum(kind == "operation.chunk" for _, kind, _ in parse(seen)) >= 3:
                            break
                events = parse(seen)
                session_id = events[0][2]["session_id"]
                answer = await _stored_answer(tmp_path / "x.db", session_id, "ideas")
                assert answer.incomplete
                assert answer.finish_reason == "cancelled"
                assert answer.assistant_response
                assert (ARTICLE * 4).startswith(answer.assistant_response)
                assert answer.assistant_response != ARTICLE * 4
                assert model.open_streams == 0  # closed before its partial turn was recorded
                assert len(model.requests) == 1  # the article never ran

                # Whoever resumes the run later finds its end: every operation cancelled, once.
                last = str(events[-1][0])
                rest = await http.get(
                    f"{url}/v1/flows/runs/{events[0][2]['run_id']}", headers={"last-event-id": last}
                )
                tail = parse(rest.content)
    finally:
        await store.aclose()
    assert [kind for _, kind, _ in tail if kind != "operation.chunk"] == [
        "operation.cancelled",
        "operation.cancelled",
        "run.cancelled",
    ]
    assert tail[-1][2]["cancelled"] == [data["operation"] for _, kind, data in tail[-3:-1]]


def _content(events: list[Event]) -> list[tuple[str, Any, Any]]:
    # What two runs of the same flow share (run and operation ids differ).
    return [(kind, data.get("name"), data.get("chunk", {}).get("data")) for _, kind, data in events]


async def test_resuming_after_a_random_cut_gets_exactly_the_rest(serve: Serve) -> None:
    app = create_app(
        [writer(responses=[IDEAS, ARTICLE] * 20, delay=0.003)], flows={"two": two_steps}, resume_grace=10
    )
    url = serve(app)
    whole = await run_flow(url)
    rng = random.Random(13)
    async with httpx.AsyncClient(timeout=10) as http:
        for cut in sorted(rng.sample(range(1, len(whole)), 5)):
            seen = b""
            async with http.stream("POST", f"{url}/v1/flows/two/runs") as reply:
                async for piece in reply.aiter_raw():
                    seen += piece
                    if len(split(seen)) >= cut:
                        break
            head = parse(seen)[:cut]
            run_id = head[0][2]["run_id"]
            rest = await http.get(f"{url}/v1/flows/runs/{run_id}", headers={"last-event-id": str(cut)})
            assert rest.status_code == 200
            tail = parse(rest.content)
            events = head + tail
            assert [event_id for event_id, _, _ in events] == list(range(1, len(whole) + 1)), cut
            assert _content(events) == _content(whole), cut
            assert all(data["run_id"] == run_id for _, _, data in events)


async def test_unknown_flows_and_runs_are_404s(serve: Serve) -> None:
    url = serve(create_app([writer()], flows={"two": two_steps}))
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(f"{url}/v1/flows/three/runs", json={})
        assert reply.status_code == 404
        assert reply.json()["error"]["code"] == "not_found"
        assert "two" in reply.json()["error"]["message"]
        for run_id in ("run_0123", "chatcmpl-0123"):
            reply = await http.get(f"{url}/v1/flows/runs/{run_id}")
            assert reply.status_code == 404
            assert reply.json()["error"]["code"] == "not_found"
        # A chat completion's stream is not a flow run, even while the hub holds it.
        body = {"model": "writer", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        chat = await http.post(f"{url}/v1/chat/completions", json=body)
        completion_id = json.loads(split(chat.content)[0][1].removeprefix(b"data: "))["id"]
        assert (await http.get(f"{url}/v1/flows/runs/{completion_id}")).status_code == 404
        assert (await http.get(f"{url}/v1/flows")).json()["data"] == [{"id": "two", "object": "flow"}]


def _refusing(session: Session) -> Builder:
    if "topic" not in session.metadata["inputs"]:
        raise ConfigurationError("this flow needs inputs.topic")
    return two_steps(session)


def _broken(session: Session) -> Builder:
    raise RuntimeError("secret database password in a bug")


async def test_bad_requests_are_400s_naming_the_field_and_a_broken_build_a_500(serve: Serve) -> None:
    flows = {"two": two_steps, "refusing": _refusing, "broken": _broken, "other": lambda session: Builder()}
    url = serve(create_app([writer()], flows=flows))
    async with httpx.AsyncClient(timeout=10) as http:
        bad: list[tuple[dict[str, Any] | bytes, str | None]] = [
            ({"inputz": {}}, "inputz"),
            ({"inputs": [1]}, "inputs"),
            ({"max_concurrent": 0}, "max_concurrent"),
            ({"on_error": "ignore"}, "on_error"),
            (b"{not json", None),
            (b"[]", None),
        ]
        for body, param in bad:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            reply = await http.post(f"{url}/v1/flows/two/runs", content=content)
            assert reply.status_code == 400, body
            assert reply.json()["error"]["param"] == param, body
        assert (await http.post(f"{url}/v1/flows/two/runs", content=b"")).status_code == 200

        refused = await http.post(f"{url}/v1/flows/refusing/runs", json={})
        assert refused.status_code == 400
        assert "inputs.topic" in refused.json()["error"]["message"]
        assert (
            await http.post(f"{url}/v1/flows/refusing/runs", json={"inputs": {"topic": "x"}})
        ).status_code == 200

        for name in ("broken", "other"):
            reply = await http.post(f"{url}/v1/flows/{name}/runs")
            assert reply.status_code == 500
            assert reply.json()["error"]["type"] == "server_error"
            assert "secret" not in reply.text


async def test_a_failing_step_gives_operation_failed_then_run_failed(serve: Serve) -> None:
    url = serve(create_app([writer(fail_after=2)], flows={"two": two_steps}))
    events = await run_flow(url)
    terminal = [
        (kind, data["name"])
        for _, kind, data in events
        if kind.startswith("operation.") and kind not in ("operation.started", "operation.chunk")
    ]
    assert terminal == [("operation.failed", "ideas"), ("operation.skipped", "article")]
    failed = next(data for _, kind, data in events if kind == "operation.failed")
    assert failed["error"]["type"] == "StreamInterrupted"
    assert "Traceback" not in json.dumps(failed)
    assert events[-1][1] == "run.failed"
    assert events[-1][2]["error"]["type"] == "FlowError"
    assert events[-1][2]["failed"] == [failed["operation"]]
    assert events[-1][2]["skipped"] == [
        data["operation"] for _, kind, data in events if kind == "operation.skipped"
    ]


async def test_on_error_continue_lets_the_others_finish(serve: Serve) -> None:
    async def boom() -> None:
        raise ValueError("no such thing")

    def with_a_bad_step(session: Session) -> Builder:
        builder = two_steps(session)
        builder.add(boom, name="boom")
        return builder

    url = serve(create_app([writer()], flows={"two": with_a_bad_step}))
    events = await run_flow(url, {"on_error": "continue", "max_concurrent": 1})
    failed = next(data for _, kind, data in events if kind == "operation.failed")
    assert (failed["name"], failed["error"]) == ("boom", {"type": "ValueError", "message": "no such thing"})
    assert events[-1][1] == "run.completed"
    assert len(events[-1][2]["completed"]) == 2
    assert events[-1][2]["failed"] == [failed["operation"]]


def test_the_flow_serving_example_runs() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "serve_flow.py"
    result = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "[ideas] 1. Warm cups. 2. Quiet mornings.\n"
        "[line] Tea is warm cups on quiet mornings.\n"
        "run.completed: 2 operations completed\n"
    )
