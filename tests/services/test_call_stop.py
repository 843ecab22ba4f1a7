"""Stopping a call: `aclose()` from any task (the stop button), and what a held call keeps.

The stop button: one task iterates a call, another calls its `aclose()`. The iterating task's loop
ends cleanly (no exception), the provider stream is closed, and `response` holds what had arrived.
"""

from __future__ import annotations

import gc
import json

import anyio
import pytest

from lionflow import Chunk, iModel
from lionflow.errors import StructuredOutputError
from lionflow.services.call import ModelCall
from lionflow.testing import ScriptedModel
from tests.helpers import no_task_left
from tests.loopback import LoopbackServer, Reply
from tests.providers.helpers import HI, ProviderCase
from tests.providers.test_common_behaviour import CASES

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "tell me a story"}]
STORY = "one two three four five six seven eight"


async def _stop_after(call: ModelCall, chunks: int) -> list[str]:
    """Iterate `call` in one task and `aclose()` it from another once `chunks` texts arrived; the
    texts the iterating task saw. Fails if the iterating task's loop does not end by itself."""
    seen: list[str] = []
    enough = anyio.Event()

    async def consume() -> None:
        async for chunk in call:
            if chunk.type == "text":
                seen.append(chunk.data)
                if len(seen) == chunks:
                    enough.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            await enough.wait()
            await call.aclose()  # from this task, while the other waits for the next chunk
    return seen


async def test_aclose_from_another_task_ends_the_loop_and_keeps_what_arrived() -> None:
    model = ScriptedModel(responses=[STORY], chunk_size=4, delay=0.05)
    async with no_task_left():
        call = model.invoke(MESSAGES)
        seen = await _stop_after(call, 2)
    assert seen == ["one ", "two "]
    assert model.open_streams == 0
    response = call.response
    assert response is not None
    assert response.incomplete
    assert response.finish_reason == "cancelled"
    assert response.text == "one two "
    assert response.error is None


async def test_aclose_from_another_task_before_the_first_chunk() -> None:
    model = ScriptedModel(responses=[STORY], connect_delay=30)
    call = model.invoke(MESSAGES)
    finished = anyio.Event()

    async def consume() -> None:
        async for _chunk in call:
            raise AssertionError("no chunk was expected")
        finished.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            while not model.requests:  # noqa: ASYNC110 - the request is out: the consumer waits
                await anyio.sleep(0.01)
            await call.aclose()
    assert finished.is_set()
    assert call.response is not None
    assert call.response.incomplete
    assert call.response.finish_reason == "cancelled"
    assert model.open_streams == 0


async def test_aclose_from_another_task_while_the_consumer_is_in_its_loop_body() -> None:
    model = ScriptedModel(responses=[STORY], chunk_size=4)
    call = model.invoke(MESSAGES)
    got_one, stopped = anyio.Event(), anyio.Event()
    seen: list[Chunk] = []

    async def consume() -> None:
        async for chunk in call:
            seen.append(chunk)
            got_one.set()
            await stopped.wait()  # busy with the chunk while the other task presses stop

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            await got_one.wait()
            await call.aclose()
            stopped.set()
    assert [chunk.data for chunk in seen] == ["one "]
    assert call.response is not None
    assert call.response.text == "one "
    assert model.open_streams == 0


async def test_an_awaited_call_stopped_from_another_task_returns_the_partial_response() -> None:
    model = ScriptedModel(responses=[STORY], chunk_size=4, delay=0.05)
    call = model.invoke(MESSAGES)
    result = []

    async def wait_for_it() -> None:
        result.append(await call)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(wait_for_it)
            await anyio.sleep(0.12)
            await call.aclose()
    (response,) = result
    assert response is call.response
    assert response.incomplete
    assert response.finish_reason == "cancelled"
    assert STORY.startswith(response.text)
    assert model.open_streams == 0


async def test_aclose_twice_and_from_both_tasks_is_harmless() -> None:
    model = ScriptedModel(responses=[STORY], chunk_size=4, delay=0.05)
    call = model.invoke(MESSAGES)
    await _stop_after(call, 1)
    await call.aclose()
    assert (await call).text == "one "


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_aclose_from_another_task_disconnects_from_the_provider(
    case: ProviderCase, server: LoopbackServer
) -> None:
    server.add(Reply(pieces=case.text_body(*[f"word{i} " for i in range(40)]), delay=0.05))
    model = case.loopback_model(server)
    try:
        async with no_task_left(), model.stream(HI) as call:
            seen = await _stop_after(call, 2)
    finally:
        await model.aclose()
    # words that had already arrived together may still be read before the stop takes effect
    assert seen[:2] == ["word0 ", "word1 "]
    assert len(seen) < 40
    received = server.requests[-1]
    assert await anyio.to_thread.run_sync(received.disconnected.wait, 2)
    assert not received.completed.is_set()
    assert call.response is not None
    assert call.response.incomplete
    assert call.response.finish_reason == "cancelled"
    assert call.response.text == "".join(seen)


# -- what a held call keeps ------------------------------------------------------------------------


async def test_a_held_call_left_by_break_frees_its_slot_on_aclose() -> None:
    model = ScriptedModel(responses=[STORY, "again"], chunk_size=4, max_concurrent=1)
    call = model.invoke(MESSAGES)
    async for _chunk in call:
        break
    await call.aclose()
    assert model.open_streams == 0
    with anyio.fail_after(5):  # the second call gets the only slot
        assert (await model.invoke(MESSAGES)).text == "again"


async def test_a_held_call_left_by_break_frees_its_slot_when_dropped() -> None:
    model = ScriptedModel(responses=[STORY, "again"], chunk_size=4, max_concurrent=1)
    call: ModelCall | None = model.invoke(MESSAGES)
    assert call is not None
    async for _chunk in call:
        break
    del call
    gc.collect()
    with anyio.fail_after(5):
        assert (await model.invoke(MESSAGES)).text == "again"
    assert model.open_streams == 0


async def test_the_stream_block_frees_the_slot_however_it_is_left() -> None:
    model = ScriptedModel(responses=[STORY, "again"], chunk_size=4, max_concurrent=1)
    async with model.stream(MESSAGES) as call:
        async for _chunk in call:
            break
    with anyio.fail_after(5):
        assert (await model.invoke(MESSAGES)).text == "again"
    assert call.response is not None
    assert call.response.text == "one "


# -- structured replies that are not JSON ----------------------------------------------------------


async def test_a_json_schema_reply_that_is_not_json_is_a_structured_output_error() -> None:
    model = ScriptedModel(responses=["Sorry, I cannot answer in JSON."])
    with pytest.raises(StructuredOutputError, match="not JSON") as caught:
        await model.invoke(MESSAGES, response_format={"type": "object"})
    assert isinstance(caught.value, ValueError)  # as json.loads' own error was
    assert isinstance(caught.value.__cause__, json.JSONDecodeError)
    assert caught.value.response is not None
    assert caught.value.response.text == "Sorry, I cannot answer in JSON."


async def test_a_json_schema_reply_with_broken_json_is_a_structured_output_error() -> None:
    model: iModel = ScriptedModel(responses=['{"name": "Ada", oops}'])
    with pytest.raises(StructuredOutputError) as caught:
        await model.invoke(MESSAGES, response_format={"type": "object"})
    assert caught.value.response is not None
    assert caught.value.response.text == '{"name": "Ada", oops}'
