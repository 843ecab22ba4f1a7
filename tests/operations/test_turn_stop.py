"""Stopping a turn from any task, and what a held turn keeps: the partial turn is always recorded."""

from __future__ import annotations

import gc
from pathlib import Path

import anyio
import pytest

from lionflow import AssistantResponseContent, Session, SQLiteStore
from lionflow.operations import Turn, communicate
from lionflow.testing import ScriptedModel
from tests.helpers import no_task_left

pytestmark = pytest.mark.anyio

STORY = "one two three four five six seven eight"


def _session(model: ScriptedModel, store: SQLiteStore | None = None) -> Session:
    session = Session(store=store)
    session.services.register(model)
    return session


def _answer_of(session: Session, branch: str = "chat") -> AssistantResponseContent:
    question, answer = session.get_branch(branch).messages
    assert question.chat_msg["content"] == "go"
    assert isinstance(answer.content, AssistantResponseContent)
    return answer.content


async def test_aclose_from_another_task_ends_the_loop_and_records_the_partial_turn(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "chat.db")
    model = ScriptedModel(responses=[STORY], chunk_size=4, delay=0.05)
    session = _session(model, store)
    turn = communicate(session, "chat", instruction="go")
    seen: list[str] = []
    enough = anyio.Event()

    async def consume() -> None:
        async for chunk in turn:
            seen.append(chunk.data)
            if len(seen) == 2:
                enough.set()

    try:
        with anyio.fail_after(5):
            async with no_task_left(), anyio.create_task_group() as group:
                group.start_soon(consume)
                await enough.wait()
                await turn.aclose()  # the stop button, while the other task waits for a chunk
        assert seen == ["one ", "two "]
        assert model.open_streams == 0
        answer = _answer_of(session)
        assert answer.incomplete
        assert answer.finish_reason == "cancelled"
        assert answer.assistant_response == "one two "
        again = await Session.load(store, session.id)
        assert [m.chat_msg["content"] for m in again.get_branch("chat").messages] == ["go", "one two "]
    finally:
        await store.aclose()


async def test_an_awaited_turn_stopped_from_another_task_returns_the_partial_response() -> None:
    model = ScriptedModel(responses=[STORY], chunk_size=4, delay=0.05)
    session = _session(model)
    turn = communicate(session, "chat", instruction="go")
    result = []

    async def wait_for_it() -> None:
        result.append(await turn)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(wait_for_it)
            await anyio.sleep(0.12)
            await turn.aclose()
    (response,) = result
    assert response.incomplete
    assert response.finish_reason == "cancelled"
    assert _answer_of(session).assistant_response == response.text
    assert STORY.startswith(response.text)


async def test_aclose_from_another_task_before_the_first_chunk_records_an_empty_answer() -> None:
    model = ScriptedModel(responses=[STORY], connect_delay=30)
    session = _session(model)
    turn = communicate(session, "chat", instruction="go")

    async def consume() -> None:
        async for _chunk in turn:
            raise AssertionError("no chunk was expected")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            while not model.requests:  # noqa: ASYNC110 - the request is out: the consumer waits
                await anyio.sleep(0.01)
            await turn.aclose()
    answer = _answer_of(session)
    assert answer.incomplete
    assert answer.assistant_response == ""


# -- what a held turn keeps ------------------------------------------------------------------------


async def test_a_held_turn_left_by_break_frees_the_slot_on_aclose() -> None:
    model = ScriptedModel(responses=[STORY, "again"], chunk_size=4, max_concurrent=1)
    session = _session(model)
    turn = communicate(session, "chat", instruction="go")
    async for _chunk in turn:
        break
    await turn.aclose()
    assert _answer_of(session).assistant_response == "one "
    with anyio.fail_after(5):  # the next turn gets the model's only slot
        assert (await communicate(session, "other", instruction="go")).text == "again"


async def test_a_held_turn_left_by_break_frees_the_slot_when_dropped() -> None:
    model = ScriptedModel(responses=[STORY, "again"], chunk_size=4, max_concurrent=1)
    session = _session(model)
    turn: Turn | None = communicate(session, "chat", instruction="go")
    assert turn is not None
    async for _chunk in turn:
        break
    del turn
    gc.collect()
    with anyio.fail_after(5):
        assert (await communicate(session, "other", instruction="go")).text == "again"
    assert _answer_of(session).assistant_response == "one "
    assert model.open_streams == 0


async def test_the_turn_block_records_the_turn_however_it_is_left() -> None:
    model = ScriptedModel(responses=[STORY], chunk_size=4)
    session = _session(model)
    async with communicate(session, "chat", instruction="go") as turn:
        async for _chunk in turn:
            break
    assert turn.response_message is not None
    assert _answer_of(session).assistant_response == "one "
    assert model.open_streams == 0
