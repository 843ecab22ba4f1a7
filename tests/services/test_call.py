"""The call object: awaited or iterated, once; cleanup however the loop is left."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from lionflow import Chunk, Response, StreamClosed, StreamConsumed, iModel
from lionflow.testing import ScriptedModel
from tests.helpers import no_task_left

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "tell me a story"}]


async def test_awaited_invoke_returns_the_assembled_response() -> None:
    model = ScriptedModel(responses=["Once upon a time."], chunk_size=5)
    response = await model.invoke(messages=MESSAGES)
    assert isinstance(response, Response)
    assert response.text == "Once upon a time."
    assert response.finish_reason == "stop"
    assert not response.incomplete
    # 4 text chunks of <= 5 characters, a usage chunk and a finish chunk
    assert response.chunk_count == 6
    assert response.usage is not None
    assert response.usage.input_tokens == 4  # "tell me a story", counted in words
    assert response.usage.output_tokens == 4
    assert response.provider == "scripted"
    assert response.model == "scripted"
    assert response.time_to_first_chunk is not None
    assert 0 <= response.time_to_first_chunk <= response.duration


async def test_iterated_invoke_yields_chunks_in_order_ending_with_finish() -> None:
    model = ScriptedModel(responses=["Once upon a time."], chunk_size=5)
    chunks = [chunk async for chunk in model.invoke(messages=MESSAGES)]
    assert [c.type for c in chunks] == ["text"] * 4 + ["usage", "finish"]
    assert "".join(str(c) for c in chunks) == "Once upon a time."
    assert [c.data for c in chunks[:4]] == ["Once ", "upon ", "a tim", "e."]
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].metadata["finish_reason"] == "stop"


async def test_both_forms_work_whatever_the_stream_flag_says() -> None:
    model = ScriptedModel(responses=["abcdefgh", "abcdefgh"], chunk_size=2, stream=False)
    chunks = [chunk async for chunk in model.invoke(messages=MESSAGES)]
    # provider-side non-streaming mode: the whole text arrives as one chunk, still iterable
    assert [c.data for c in chunks if c.type == "text"] == ["abcdefgh"]
    assert (await model.invoke(messages=MESSAGES)).text == "abcdefgh"
    assert [r.stream for r in model.requests] == [False, False]


async def test_a_call_streams_once() -> None:
    model = ScriptedModel(responses=["hello"])
    call = model.invoke(messages=MESSAGES)
    _ = [chunk async for chunk in call]
    with pytest.raises(StreamConsumed):
        async for _chunk in call:
            pass
    # awaiting a finished call gives its response rather than streaming again
    assert (await call).text == "hello"
    assert len(model.requests) == 1


async def test_await_after_partial_iteration_drains_the_rest() -> None:
    model = ScriptedModel(responses=["hello world"], chunk_size=2)
    call = model.invoke(messages=MESSAGES)
    first = await call.__anext__()
    assert first.data == "he"
    response = await call
    assert response.text == "hello world"


async def test_closing_before_reading_makes_the_call_unusable() -> None:
    model = ScriptedModel(responses=["hello"])
    call = model.invoke(messages=MESSAGES)
    await call.aclose()
    with pytest.raises(StreamClosed):
        await call
    assert model.requests == []


async def test_stream_context_manager_closes_on_exit_and_keeps_the_response() -> None:
    model = ScriptedModel(responses=["a long reply that we do not read to the end"], chunk_size=3)
    async with model.stream(messages=MESSAGES) as call:
        async for chunk in call:
            assert model.open_streams == 1
            if chunk.data == "a l":
                break
    assert model.open_streams == 0
    assert call.response is not None
    assert call.response.incomplete
    assert call.response.finish_reason == "cancelled"
    assert call.response.text == "a l"


async def test_early_break_closes_the_provider_stream() -> None:
    model = ScriptedModel(responses=["one two three four five six"], chunk_size=2, delay=0.001)
    seen = []
    async with no_task_left():
        async for chunk in model.invoke(messages=MESSAGES):  # the seed form, no context manager
            seen.append(chunk.data)
            if len(seen) == 2:
                break
        # the dropped call closes its stream in a task of its own, a few event-loop turns later
        with anyio.fail_after(5):
            while model.open_streams:  # noqa: ASYNC110 - nothing to wait on but the count
                await anyio.sleep(0.001)
    assert seen == ["on", "e "]


async def test_an_exception_in_the_loop_body_closes_the_stream() -> None:
    model = ScriptedModel(responses=["one two three"], chunk_size=2)

    async def consume() -> None:
        async for _chunk in model.invoke(messages=MESSAGES):
            raise RuntimeError("consumer failed")

    async with no_task_left():
        with pytest.raises(RuntimeError, match="consumer failed"):
            await consume()
    assert model.open_streams == 0


async def test_held_call_closes_with_aclose() -> None:
    model = ScriptedModel(responses=["one two three"], chunk_size=2)
    call = model.invoke(messages=MESSAGES)
    async for _chunk in call:
        break
    assert model.open_streams == 1  # the caller still holds the call: it is theirs to close
    await call.aclose()
    assert model.open_streams == 0
    assert call.response is not None
    assert call.response.finish_reason == "cancelled"


async def test_cancellation_leaves_an_incomplete_response_and_a_closed_stream() -> None:
    model = ScriptedModel(responses=["slow words arriving one at a time"], chunk_size=5, delay=0.02)
    call = model.invoke(messages=MESSAGES)
    received: list[Chunk] = []
    async with no_task_left():
        with anyio.move_on_after(0.09):
            async for chunk in call:
                received.append(chunk)
    assert 1 <= len(received) < 7
    response = call.response
    assert response is not None
    assert response.incomplete
    assert response.finish_reason == "cancelled"
    assert response.text == "".join(c.data for c in received)
    assert response.error is None
    assert model.open_streams == 0


async def test_cancelling_an_awaited_call_keeps_the_partial_response() -> None:
    model = ScriptedModel(responses=["slow words arriving one at a time"], chunk_size=5, delay=0.02)
    call = model.invoke(messages=MESSAGES)
    with anyio.move_on_after(0.07):
        await call
    assert call.response is not None
    assert call.response.incomplete
    assert call.response.text  # some text had arrived and was kept
    assert "slow words arriving one at a time".startswith(call.response.text)
    assert model.open_streams == 0


async def test_scripted_via_imodel_provider_name() -> None:
    model = iModel(provider="scripted", model="gpt-4o-mini", responses=["hi there"], chunk_size=2)
    response = await model.invoke(messages=MESSAGES)
    assert response.text == "hi there"
    assert response.model == "gpt-4o-mini"
    assert model.name == "gpt-4o-mini"
