"""What a store holds is the conversation the Session had: failed creating writes are healed with
the whole branch, imports land once, metadata is not reverted, ids are not silently reused."""

from __future__ import annotations

import math

import anyio
import pytest

from lionflow import (
    ConfigurationError,
    InstructionContent,
    Message,
    Session,
    StoreError,
)
from tests.session.conftest import Stores, turn

pytestmark = pytest.mark.anyio


def _turn(text: str) -> tuple[Message, Message]:
    return turn(text, text.lower())


def _texts(session: Session, branch: str) -> list[str]:
    return [str(m.chat_msg["content"]) for m in session.get_branch(branch).messages]


async def test_a_fork_after_a_failed_turn_reloads_with_the_history_it_has(store_factory: Stores) -> None:
    async with store_factory.open(fail_fast=True) as store:
        session = Session(store=store)
        chat = session.create_branch("chat")
        await session.add_turn(chat, *_turn("A"))
        with store_factory.blocked(), pytest.raises(StoreError):
            await session.add_turn(chat, *_turn("B"))  # B is in memory, never stored
        await session.add_turn(chat, *_turn("C"))
        session.fork(chat, name="fork")
        await session.flush()

        again = await Session.load(store, session.id)
        assert _texts(again, "chat") == ["A", "a", "C", "c"]
        assert _texts(again, "fork") == _texts(session, "fork") == ["A", "a", "B", "b", "C", "c"]


async def test_a_branch_whose_creating_write_failed_is_stored_whole_by_its_next_turn(
    store_factory: Stores,
) -> None:
    async with store_factory.open(fail_fast=True) as store:
        session = Session(store=store)
        chat = session.create_branch("chat")
        await session.add_turn(chat, *_turn("A"))
        with store_factory.blocked():
            fork = session.fork(chat, name="fork")
            pirate = session.create_branch("pirate", system="You are a pirate", metadata={"mood": "salty"})
            with pytest.raises(StoreError):
                await session.flush()  # both creating writes failed
        await session.add_turn(fork, *_turn("B"))
        await session.add_turn(pirate, *_turn("C"))
        await session.flush()

        again = await Session.load(store, session.id)
        assert _texts(again, "fork") == _texts(session, "fork") == ["A", "a", "B", "b"]
        assert _texts(again, "pirate") == _texts(session, "pirate") == ["You are a pirate", "C", "c"]
        assert again.get_branch("pirate").metadata == {"mood": "salty"}


async def test_a_turn_right_after_a_fork_is_stored_once(store_factory: Stores) -> None:
    # The fork's creating write is still pending when the turn's write is built: the turn's
    # write may create the fork too, but must not append its history a second time.
    async with store_factory.open() as store:
        session = Session(store=store)
        chat = session.create_branch("chat", system="Be brief.")
        await session.add_turn(chat, *_turn("A"))
        fork = session.fork(chat, name="fork")
        await session.add_turn(fork, *_turn("B"))
        again = await Session.load(store, session.id)
        assert _texts(again, "fork") == ["Be brief.", "A", "a", "B", "b"]
        assert _texts(again, "chat") == ["Be brief.", "A", "a"]


async def test_two_concurrent_imports_store_the_session_once(store_factory: Stores) -> None:
    source = Session()
    await source.add_turn(source.create_branch("chat"), *_turn("A"))
    data = source.export()
    outcomes: list[str] = []
    async with store_factory.open() as store:

        async def import_it() -> None:
            try:
                await store.import_session(data)
                outcomes.append("stored")
            except ConfigurationError:
                outcomes.append("refused")

        async with anyio.create_task_group() as group:
            group.start_soon(import_it)
            group.start_soon(import_it)
        assert sorted(outcomes) == ["refused", "stored"]
        assert _texts(await Session.load(store, source.id), "chat") == ["A", "a"]


async def test_a_turn_from_an_older_session_object_keeps_newer_metadata(store_factory: Stores) -> None:
    async with store_factory.open() as first_store, store_factory.open() as second_store:
        session = Session(store=first_store, metadata={"user": "alice"})
        chat = session.create_branch("chat", metadata={"topic": "old"})
        await session.flush()
        other = await Session.load(second_store, session.id)  # e.g. another worker process

        session.metadata["user"] = "bob"
        chat.metadata["topic"] = "new"
        await session.add_turn(chat, *_turn("A"))
        await other.add_turn(other.get_branch("chat"), *_turn("B"))  # never touched metadata

        again = await Session.load(first_store, session.id)
        assert again.metadata == {"user": "bob"}
        assert again.get_branch("chat").metadata == {"topic": "new"}
        assert _texts(again, "chat") == ["A", "a", "B", "b"]


async def test_changed_metadata_is_written_again_after_a_failed_write(store_factory: Stores) -> None:
    async with store_factory.open(fail_fast=True) as store:
        session = Session(store=store)
        chat = session.create_branch("chat")
        await session.flush()
        session.metadata["user"] = "bob"
        with store_factory.blocked(), pytest.raises(StoreError):
            await session.add_turn(chat, *_turn("A"))
        await session.add_turn(chat, *_turn("B"))
        assert (await Session.load(store, session.id)).metadata == {"user": "bob"}


async def test_a_different_message_under_a_stored_id_is_refused(store_factory: Stores) -> None:
    async with store_factory.open() as first_store, store_factory.open() as second_store:
        first = Session(store=first_store)
        first.create_branch("chat")
        await first.flush()
        second = await Session.load(second_store, first.id)

        mine = Message(id="q-1", content=InstructionContent(instruction="from first"))
        theirs = Message(id="q-1", content=InstructionContent(instruction="from second"))
        await first.add_turn(first.get_branch("chat"), mine, _turn("x")[1])
        with pytest.raises(StoreError, match="q-1"):
            await second.add_turn(second.get_branch("chat"), theirs, _turn("y")[1])
        # the same message again (here: in a fork of the loaded session) is fine
        await second.flush()
        again = await Session.load(second_store, first.id)
        again.fork("chat", name="fork")
        await again.flush()
        assert _texts(await Session.load(first_store, first.id), "chat") == ["from first", "x"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
async def test_metadata_that_is_not_strict_json_is_refused(store_factory: Stores, bad: float) -> None:
    async with store_factory.open() as store:
        with pytest.raises(ConfigurationError, match="session metadata"):
            Session(store=store, metadata={"score": bad})
        session = Session(store=store)
        with pytest.raises(ConfigurationError, match="branch"):
            session.create_branch("chat", metadata={"score": bad})
        chat = session.create_branch("chat")
        question = Message(content=InstructionContent(instruction="q"), metadata={"score": bad})
        with pytest.raises(ConfigurationError, match="message"):
            await session.add_turn(chat, question, _turn("a")[1])
        chat.metadata["score"] = bad  # put in later: refused before the next turn's request
        with pytest.raises(ConfigurationError, match="branch"):
            await session.check_store()
        assert chat.order == ()
