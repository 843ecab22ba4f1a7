"""A turn stopped before its request (while it checks the store, or while its call waits for the
model's slot) ends the same way wherever it was: an empty incomplete answer is recorded, the
awaiting task gets that partial Response, an iterating task's loop ends quietly."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from lionflow import AssistantResponseContent, ConfigurationError, Session, SQLiteStore
from lionflow.operations import Turn, communicate
from lionflow.services.response import Response
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio


class SlowCheckStore(SQLiteStore):
    """An SQLite store whose check before each turn lasts until the test lets it finish."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.checking = anyio.Event()
        self.finish_check = anyio.Event()

    async def check(self, *, writable: bool = False) -> None:
        self.checking.set()
        await self.finish_check.wait()
        await super().check(writable=writable)


def _recorded_answer(session: Session) -> AssistantResponseContent:
    question, answer = session.get_branch("chat").messages
    assert question.chat_msg["content"] == "go"
    assert isinstance(answer.content, AssistantResponseContent)
    return answer.content


async def _stop_awaited(turn: Turn, waiting: anyio.Event | None) -> Response:
    """Await `turn` in one task and stop it from this one once the awaiting task waits (on `waiting`,
    or until every task is blocked); what the awaiting task got."""
    result: list[Response] = []

    async def wait_for_it() -> None:
        result.append(await turn)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(wait_for_it)
            if waiting is not None:
                await waiting.wait()
            else:
                await anyio.wait_all_tasks_blocked()
            await turn.aclose()
    (response,) = result
    return response


def _assert_empty_stopped(response: Response, session: Session) -> None:
    assert response.incomplete
    assert response.finish_reason == "cancelled"
    assert response.text == ""
    answer = _recorded_answer(session)
    assert answer.incomplete
    assert answer.finish_reason == "cancelled"
    assert answer.assistant_response == ""


async def test_a_turn_stopped_while_it_checks_the_store_records_an_empty_answer(tmp_path: Path) -> None:
    store = SlowCheckStore(tmp_path / "chat.db")
    model = ScriptedModel(responses=["hello"])
    session = Session(store=store)
    session.services.register(model)
    try:
        turn = communicate(session, "chat", instruction="go")
        response = await _stop_awaited(turn, store.checking)
        assert not model.requests  # nothing was sent
        _assert_empty_stopped(response, session)
        assert turn.response is response
        store.finish_check.set()
        await session.flush()
        again = await Session.load(store, session.id)
        assert [m.chat_msg["content"] for m in again.get_branch("chat").messages] == ["go", ""]
    finally:
        await store.aclose()


async def test_a_turn_stopped_while_waiting_for_the_model_slot_records_an_empty_answer() -> None:
    model = ScriptedModel(responses=["held", "hello"], max_concurrent=1)
    session = Session()
    session.services.register(model)
    async with model.invoke("hold the only slot") as held:
        async for _chunk in held:
            break
        turn = communicate(session, "chat", instruction="go")
        response = await _stop_awaited(turn, None)
    assert len(model.requests) == 1  # only the held call's
    _assert_empty_stopped(response, session)


async def test_an_iterated_turn_stopped_while_it_checks_the_store_ends_quietly(tmp_path: Path) -> None:
    store = SlowCheckStore(tmp_path / "chat.db")
    model = ScriptedModel(responses=["hello"])
    session = Session(store=store)
    session.services.register(model)
    turn = communicate(session, "chat", instruction="go")
    ended = anyio.Event()

    async def consume() -> None:
        async for _chunk in turn:
            raise AssertionError("no chunk was expected")
        ended.set()

    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(consume)
                await store.checking.wait()
                await turn.aclose()
        assert ended.is_set()
        assert _recorded_answer(session).incomplete
    finally:
        store.finish_check.set()
        await store.aclose()


async def test_a_turn_whose_arguments_are_refused_records_nothing() -> None:
    model = ScriptedModel(responses=["hello"])
    session = Session()
    session.services.register(model)
    with pytest.raises(ConfigurationError, match="temperature"):
        await communicate(session, "chat", instruction="go", temperature="hot")
    assert not model.requests
    assert session.get_branch("chat").messages == []
