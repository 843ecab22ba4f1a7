"""StreamingHandler fed by real calls (`invoke(..., streaming_handler=)`, `communicate`, a guarded
call, `Rails`): its consumer gets the text the caller gets and ends on every outcome."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from lionflow import Session
from lionflow.errors import StreamInterrupted
from lionflow.guards import OutputGuard, Rails, StreamingHandler, blocklist
from lionflow.operations import communicate
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio

TEXT = "The capital of France is Paris. " * 5


async def _consume(handler: StreamingHandler[str], into: list[str]) -> None:
    async for piece in handler:
        into.append(piece)


async def test_the_seed_pattern_a_consumer_task_and_an_awaited_call() -> None:
    model = ScriptedModel(name="m", responses=[TEXT], chunk_size=7, delay=0.001)
    handler = StreamingHandler()
    pieces: list[str] = []
    async with anyio.create_task_group() as group:
        group.start_soon(_consume, handler, pieces)
        response = await model.invoke("hi", streaming_handler=handler)
    assert "".join(pieces) == response.text == TEXT
    assert await handler.wait() == TEXT


async def test_a_guard_stop_ends_the_consumer_with_only_the_released_text() -> None:
    model = ScriptedModel(name="m", responses=[TEXT + "SECRET" + TEXT], chunk_size=5)
    guard = OutputGuard(blocklist(["SECRET"]), window=20, overlap=5)
    handler = StreamingHandler()
    pieces: list[str] = []
    async with anyio.create_task_group() as group:
        group.start_soon(_consume, handler, pieces)
        response = await model.invoke("hi", streaming_handler=handler, guards=[guard])
    assert response.finish_reason == "content_filter"
    assert "".join(pieces) == response.text == await handler.wait()
    assert "SECRET" not in response.text


async def test_a_failing_call_ends_the_consumer_and_wait_raises_its_error() -> None:
    model = ScriptedModel(name="m", responses=[TEXT], chunk_size=4, fail_after=5, max_retries=0)
    handler = StreamingHandler()
    pieces: list[str] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(_consume, handler, pieces)
            with pytest.raises(StreamInterrupted):
                await model.invoke("hi", streaming_handler=handler)
    with pytest.raises(StreamInterrupted):
        await handler.wait()
    assert TEXT.startswith("".join(pieces))


async def test_a_cancelled_call_ends_the_consumer_with_what_it_had() -> None:
    model = ScriptedModel(name="m", responses=[TEXT * 20], chunk_size=4, delay=0.01)
    handler = StreamingHandler()
    pieces: list[str] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(_consume, handler, pieces)
            with anyio.move_on_after(0.2):
                await model.invoke("hi", streaming_handler=handler)
    released = await handler.wait()
    assert released == "".join(pieces)
    assert 0 < len(released) < len(TEXT * 20)
    assert model.open_streams == 0


async def test_communicate_feeds_a_handler_and_records_the_same_text() -> None:
    session = Session()
    session.services.register(ScriptedModel(name="m", responses=[TEXT], chunk_size=9))
    branch = session.create_branch(name="chat")
    handler = StreamingHandler()
    pieces: list[str] = []
    async with anyio.create_task_group() as group:
        group.start_soon(_consume, handler, pieces)
        await communicate(
            session=session,
            branch=branch,
            parameters={"instruction": "hi", "imodel": "m", "streaming_handler": handler},
        )
    assert "".join(pieces) == TEXT
    assert branch.messages[-1].chat_msg["content"] == TEXT


async def test_rails_streams_and_generates_as_nemos_calls_do() -> None:
    app = Rails(ScriptedModel(name="m", responses=[TEXT] * 2, chunk_size=6))
    history = [{"role": "user", "content": "What is the capital of France?"}]
    streamed = "".join([chunk async for chunk in app.stream_async(messages=history)])
    handler = StreamingHandler()
    result = await app.generate_async(messages=history, streaming_handler=handler)
    assert streamed == TEXT
    assert result == {"role": "assistant", "content": TEXT}
    assert await handler.wait() == TEXT


def test_the_seeds_streaming_handler_example_runs_with_only_its_imports_changed() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "streaming_handler.py"
    result = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    chunks = "".join(line.removeprefix("CHUNK: ") for line in lines if line.startswith("CHUNK: "))
    assert chunks == "The capital of France is Paris." * 2
    assert "{'role': 'assistant', 'content': 'The capital of France is Paris.'}" in lines
