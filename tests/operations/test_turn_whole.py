"""Turns are whole: an instruction is followed by its own answer, in memory and in the store, whatever
runs at the same time; a bad store fails before any request; a failed write is reported."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from lionflow import (
    AssistantResponseContent,
    ConfigurationError,
    Session,
    SQLiteStore,
    StoreError,
    StreamInterrupted,
)
from lionflow.operations import communicate
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio


def _answer(messages: list[dict[str, Any]]) -> str:
    return f"answer to {messages[-1]['content']}"


def _contents(session: Session, branch: str) -> list[str]:
    return [message.chat_msg["content"] for message in session.get_branch(branch).messages]


WHOLE = (["Q1", "answer to Q1", "Q2", "answer to Q2"], ["Q2", "answer to Q2", "Q1", "answer to Q1"])


async def test_two_turns_at_once_on_one_branch_stay_whole_in_memory_and_in_the_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "chat.db")
    model = ScriptedModel(responses=_answer, chunk_size=3, delay=0.01)  # several chunks each: they overlap
    session = Session(store=store)
    session.services.register(model)
    session.create_branch("chat")

    async def ask(question: str) -> None:
        await communicate(session, "chat", instruction=question)

    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(ask, "Q1")
                group.start_soon(ask, "Q2")
        assert _contents(session, "chat") in WHOLE
        # each request carried the branch as it was when its turn started: empty, for both
        assert sorted(request.messages[-1]["content"] for request in model.requests) == ["Q1", "Q2"]
        assert [len(request.messages) for request in model.requests] == [1, 1]
        again = await Session.load(store, session.id)
        assert _contents(again, "chat") == _contents(session, "chat")
    finally:
        await store.aclose()


async def test_a_turn_started_after_another_ended_carries_it() -> None:
    model = ScriptedModel(responses=_answer, chunk_size=3)
    session = Session()
    session.services.register(model)
    await communicate(session, "chat", instruction="Q1")
    await communicate(session, "chat", instruction="Q2")
    assert [m["content"] for m in model.requests[1].messages] == ["Q1", "answer to Q1", "Q2"]


async def test_during_the_turn_the_instruction_is_not_yet_in_the_branch() -> None:
    model = ScriptedModel(responses=["streamed words"], chunk_size=3)
    session = Session()
    session.services.register(model)
    branch = session.create_branch("chat")
    turn = communicate(session, branch, instruction="go")
    async for _chunk in turn:
        assert turn.instruction.id not in branch.order
        assert len(branch) == 0
    assert turn.response_message is not None
    assert branch.order == (turn.instruction.id, turn.response_message.id)


async def test_a_store_that_cannot_be_opened_fails_before_the_model_is_called(tmp_path: Path) -> None:
    model = ScriptedModel(responses=["never sent"])
    (tmp_path / "chat.db").write_bytes(b"this is not a database, it is a note " * 200)
    store = SQLiteStore(tmp_path / "chat.db")
    session = Session(store=store)
    session.services.register(model)
    try:
        with pytest.raises(StoreError):
            await communicate(session, "chat", instruction="go")
        assert model.requests == []
        assert len(session.get_branch("chat")) == 0
    finally:
        await store.aclose()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[bool]:
    """Another connection holds the database's write lock (longer than the store waits)."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield True
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_a_completed_turn_that_cannot_be_stored_raises_and_stays_in_memory(tmp_path: Path) -> None:
    model = ScriptedModel(responses=["the answer"], chunk_size=3)
    store = SQLiteStore(tmp_path / "chat.db", busy_timeout=0.05)
    session = Session(store=store)
    session.services.register(model)
    turn = communicate(session, "chat", instruction="go")
    await session.flush()
    locked = False
    try:
        with contextlib.ExitStack() as stack, pytest.raises(StoreError, match=f"turn {turn.instruction.id}"):
            async for _chunk in turn:  # the turn has checked the store before its request
                if not locked:
                    locked = stack.enter_context(_locked(tmp_path / "chat.db"))
        assert _contents(session, "chat") == ["go", "the answer"]
        assert turn.response is not None
        assert not turn.response.incomplete
    finally:
        await store.aclose()


async def test_a_failing_turn_keeps_its_own_error_and_flush_reports_the_store_error(tmp_path: Path) -> None:
    model = ScriptedModel(responses=["abcdefgh"], chunk_size=2, fail_after=2, max_retries=0)
    store = SQLiteStore(tmp_path / "chat.db", busy_timeout=0.05)
    session = Session(store=store)
    session.services.register(model)
    turn = communicate(session, "chat", instruction="go")
    await session.flush()  # the session and its branch are stored: only the turn's write will fail
    locked = False
    try:
        with contextlib.ExitStack() as stack, pytest.raises(StreamInterrupted):
            async for _chunk in turn:
                if not locked:
                    locked = stack.enter_context(_locked(tmp_path / "chat.db"))
        answer = session.get_branch("chat").messages[-1].content
        assert isinstance(answer, AssistantResponseContent)
        assert answer.incomplete
        with pytest.raises(StoreError, match=f"turn {turn.instruction.id}"):
            await session.flush()
    finally:
        await store.aclose()


# -- arguments ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("session", [None, "my-session", {"id": "s"}])
def test_communicate_without_a_session_says_what_it_needs(session: Any) -> None:
    with pytest.raises(ConfigurationError, match="needs session=<a lionflow Session>"):
        communicate(session=session, parameters={"instruction": "hi"})


@pytest.mark.parametrize("branch", [5, ["chat"], object()])
def test_a_branch_of_the_wrong_type_says_what_is_expected(branch: Any) -> None:
    session = Session()
    session.services.register(ScriptedModel())
    with pytest.raises(ConfigurationError, match="branch must be a Branch, a branch name or id"):
        communicate(session, branch, instruction="hi")
    with pytest.raises(ConfigurationError, match="branch must be"):
        communicate(session, parameters={"instruction": "hi", "branch": branch})


def test_a_model_or_parameters_of_the_wrong_type_say_what_is_expected() -> None:
    session = Session()
    session.services.register(ScriptedModel())
    with pytest.raises(ConfigurationError, match="imodel must be an iModel or the name"):
        communicate(session, instruction="hi", imodel=3)  # type: ignore[call-overload]  # on purpose
    with pytest.raises(ConfigurationError, match="parameters must be a dict"):
        communicate(session, parameters="hi")  # type: ignore[call-overload]  # on purpose
