"""The server itself on trio: the app served by hypercorn's trio worker (uvicorn runs asyncio
only), so that nothing in it depends on asyncio. The official clients stream, hang up, resume and
retrieve what was stored, as they do against uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import openai
import pytest
import trio
from fastapi import FastAPI
from hypercorn.config import Config
from hypercorn.trio import serve

from lionflow.serve import create_app
from lionflow.session import Session, SQLiteStore
from lionflow.session.messages.content import AssistantResponseContent
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio


@contextmanager
def serving_on_trio(app: FastAPI) -> Iterator[str]:
    """Serve `app` with hypercorn in a trio run of its own thread until the block ends."""
    with socket.socket() as probe:  # a free port (hypercorn binds by address)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.graceful_timeout = 2
    stop = threading.Event()

    async def stopped() -> None:
        while not stop.is_set():  # noqa: ASYNC110 - set from another thread
            await trio.sleep(0.02)

    async def main() -> None:
        await serve(app, config, shutdown_trigger=stopped)  # type: ignore[arg-type]

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "hypercorn did not start"
            time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(10)


async def test_on_trio_a_stream_reaches_the_client_and_is_stored(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "serve.db")
    model = ScriptedModel(name="echo", responses=lambda messages: "streamed on trio")
    with serving_on_trio(create_app([model], store=store)) as url:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused") as client:
            stream = await client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            chunks = [chunk async for chunk in stream]
            text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
            first = await client.responses.create(model="echo", input="one")
            second = await client.responses.create(model="echo", input="two", previous_response_id=first.id)
            stored = await client.responses.retrieve(second.id)
    assert text == "streamed on trio"
    assert stored.output_text == "streamed on trio"
    session = await Session.load(store, first.id)
    assert len(session.get_branch(first.id).messages) == 4
    await store.aclose()


async def test_on_trio_a_stream_resumes_and_a_client_that_hangs_up_closes_the_upstream(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "serve.db")
    model = ScriptedModel(name="slow", responses=["z" * 300] * 2, chunk_size=3, delay=0.01)
    body = {"model": "slow", "messages": [{"role": "user", "content": "go"}], "stream": True}

    async def hang_up_after(http: httpx.AsyncClient, events: int) -> str:
        seen = b""
        async with http.stream("POST", "/v1/chat/completions", json=body) as cut:
            async for piece in cut.aiter_raw():
                seen += piece
                if seen.count(b"id: ") >= events:
                    break
        return seen.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode()

    # With a grace, the stream runs on: a reconnect gets the rest.
    with serving_on_trio(create_app([model], store=store, resume_grace=30)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            completion_id = await hang_up_after(http, 4)
            rest = await http.get(
                f"/v1/chat/completions/{completion_id}",
                headers={"accept": "text/event-stream", "last-event-id": "4"},
            )
    assert rest.text.startswith("id: 5\n")
    assert rest.text.rstrip().endswith("data: [DONE]")
    # Without, hanging up cancels the call at once: the provider's stream closes, the turn is
    # stored with what had arrived.
    with serving_on_trio(create_app([model], store=store)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            completion_id = await hang_up_after(http, 2)
            with anyio.fail_after(10):
                while (await http.get(f"/v1/chat/completions/{completion_id}")).status_code == 404:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
    assert model.open_streams == 0
    answer = (await Session.load(store, completion_id)).get_branch(completion_id).messages[-1].content
    assert isinstance(answer, AssistantResponseContent)
    assert answer.incomplete is True
    assert 0 < len(answer.assistant_response) < 300
    await store.aclose()
