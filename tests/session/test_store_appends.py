"""A stored branch keeps every turn: positions come from the store, nothing stored is overwritten."""

from __future__ import annotations

import atexit

import anyio
import pytest

from lionflow import AssistantResponseContent, InstructionContent, Message, Session, StoreError
from tests.session.conftest import Stores

pytestmark = pytest.mark.anyio


def _turn(text: str) -> tuple[Message, Message]:
    return (
        Message(content=InstructionContent(instruction=text)),
        Message(content=AssistantResponseContent(assistant_response=f"answer to {text}")),
    )


def _texts(session: Session, branch: str = "chat") -> list[str]:
    return [m.chat_msg["content"] for m in session.get_branch(branch).messages if m.role == "user"]


async def test_a_failed_write_loses_no_later_turn_and_overwrites_nothing(store_factory: Stores) -> None:
    async with store_factory.open(fail_fast=True) as store:
        session = Session(store=store)
        branch = session.create_branch(name="chat")
        await session.add_turn(branch, *_turn("A"))
        question, answer = _turn("B")
        with store_factory.blocked(), pytest.raises(StoreError) as caught:
            await session.add_turn(branch, question, answer)
        assert caught.value.session_id == session.id
        assert caught.value.turn == question.id
        assert session.id in str(caught.value)
        assert question.id in str(caught.value)
        assert _texts(session) == ["A", "B"]  # the failed turn stays in memory
        await session.add_turn(branch, *_turn("C"))
        await session.flush()  # the failure was raised once, by add_turn; flush has nothing left to raise

        # A second life of the session: it loads [A, C] and adds D, which once overwrote C.
        again = await Session.load(store, session.id)
        assert _texts(again) == ["A", "C"]
        await again.add_turn(again.get_branch("chat"), *_turn("D"))
        final = await Session.load(store, session.id)
    assert _texts(final) == ["A", "C", "D"]
    assert [m.role for m in final.get_branch("chat").messages] == ["user", "assistant"] * 3


async def test_two_sessions_loading_one_stored_session_both_keep_their_turns(store_factory: Stores) -> None:
    async with store_factory.open() as first_store, store_factory.open() as second_store:
        session = Session(store=first_store)
        await session.add_turn(session.create_branch(name="chat"), *_turn("shared"))
        first = await Session.load(first_store, session.id)
        second = await Session.load(second_store, session.id)
        await first.add_turn(first.get_branch("chat"), *_turn("from first"))
        await second.add_turn(second.get_branch("chat"), *_turn("from second"))
        reloaded = await Session.load(first_store, session.id)
    assert _texts(reloaded) == ["shared", "from first", "from second"]


async def test_a_branch_whose_creation_failed_is_healed_by_its_next_write(store_factory: Stores) -> None:
    async with store_factory.open(fail_fast=True) as store:
        session = Session(store=store, metadata={"k": "v"})
        await session.flush()
        with store_factory.blocked():
            branch = session.create_branch(name="late", metadata={"topic": "x"})
            with pytest.raises(StoreError):
                await session.flush()
        await session.add_turn(branch, *_turn("first"))
        await session.add_turn(branch, *_turn("second"))
        loaded = await Session.load(store, session.id)
    assert _texts(loaded, "late") == ["first", "second"]
    assert loaded.get_branch("late").metadata == {"topic": "x"}


async def test_fork_and_import_append_the_whole_order(store_factory: Stores) -> None:
    async with store_factory.open() as store:
        session = Session(store=store)
        chat = session.create_branch(name="chat", system="Be brief.")
        for text in ("one", "two", "three"):
            await session.add_turn(chat, *_turn(text))
        fork = session.fork(chat, at=chat.order[2], name="what-if")  # system, one, its answer
        await session.add_turn(fork, *_turn("other"))
        await session.flush()
        loaded = await Session.load(store, session.id)
        assert loaded.export() == session.export()
        assert _texts(loaded, "what-if") == ["one", "other"]

        data = session.export()
        assert await store.delete_session(session.id)
        await store.import_session(data)
        imported = await Session.load(store, session.id)
        assert imported.export() == data
        await imported.add_turn(imported.get_branch("what-if"), *_turn("after import"))
        assert _texts(await Session.load(store, session.id), "what-if") == ["one", "other", "after import"]


async def test_cancelling_add_turn_while_it_waits_leaves_the_write_alone(store_factory: Stores) -> None:
    async with store_factory.open() as store:
        session = Session(store=store)
        branch = session.create_branch(name="chat")
        for index in range(2000):  # keep the store's thread busy, so the turn's write waits its turn
            session.conversations.add_item(Message(content=InstructionContent(instruction=f"m{index}")))
        with anyio.CancelScope() as scope:
            scope.cancel()
            await session.add_turn(branch, *_turn("kept"))
        assert scope.cancelled_caught
        await session.flush()
        assert _texts(await Session.load(store, session.id)) == ["kept"]


async def test_closed_stores_leave_no_exit_callbacks_behind(store_factory: Stores) -> None:
    async def open_and_close(index: int) -> None:
        async with store_factory.open() as store:
            await store.list_sessions()  # starts the store's thread

    await open_and_close(-1)  # anything registered once per process is registered by now
    before = atexit._ncallbacks()
    for index in range(50):
        await open_and_close(index)
    assert atexit._ncallbacks() == before


async def test_a_failed_write_is_logged_without_what_was_being_written(
    store_factory: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    async with store_factory.open(fail_fast=True) as store:
        session = Session(store=store, metadata={"api_key": "sk-session-secret"})
        await session.flush()
        question = Message(content=InstructionContent(instruction="my password is hunter2"))
        answer = Message(content=AssistantResponseContent(assistant_response="noted: hunter2"))
        with store_factory.blocked(), pytest.raises(StoreError) as caught:
            await session.add_turn(session.create_branch(name="chat"), question, answer)
    logged = caplog.text
    assert session.id in logged
    assert question.id in logged
    for secret in ("sk-session-secret", "hunter2"):
        assert secret not in logged
        assert secret not in str(caught.value)
