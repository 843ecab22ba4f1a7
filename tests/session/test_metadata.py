"""Metadata is JSON: what pydantic can serialize is stored in JSON mode, anything else is refused
with ConfigurationError when it is given (or, if mutated in later, before the next write)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lionflow import (
    AssistantResponseContent,
    ConfigurationError,
    InstructionContent,
    Message,
    Session,
)
from tests.session.conftest import Stores

pytestmark = pytest.mark.anyio
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Opaque:
    """A value JSON has no form for."""


def _turn(text: str) -> tuple[Message, Message]:
    return (
        Message(content=InstructionContent(instruction=text)),
        Message(content=AssistantResponseContent(assistant_response="ok")),
    )


async def test_datetimes_in_metadata_are_stored_as_iso_strings_and_turns_go_on(store_factory: Stores) -> None:
    async with store_factory.open() as store:
        session = Session(store=store, metadata={"started": WHEN})
        branch = session.create_branch(name="chat", metadata={"opened": WHEN, "tags": ("a", "b")})
        for text in ("one", "two"):
            await session.add_turn(branch, *_turn(text))
        await session.flush()
        loaded = await Session.load(store, session.id)
    assert loaded.metadata == {"started": "2026-01-02T03:04:05Z"}
    assert loaded.get_branch("chat").metadata == {"opened": "2026-01-02T03:04:05Z", "tags": ["a", "b"]}
    assert len(loaded.get_branch("chat")) == 4
    assert session.metadata["started"] == WHEN  # in memory the value is the one given


def test_values_json_cannot_hold_are_refused_when_given() -> None:
    with pytest.raises(ConfigurationError, match="session metadata"):
        Session(metadata={"handle": Opaque()})
    session = Session()
    with pytest.raises(ConfigurationError, match="metadata of branch 'chat'"):
        session.create_branch(name="chat", metadata={"handle": Opaque()})
    with pytest.raises(ConfigurationError, match="branch name"):
        session.create_branch(name="bad \ud800 name")  # a lone surrogate: no UTF-8 for it
    with pytest.raises(ConfigurationError, match="branch name"):
        session.create_branch(name=42)  # type: ignore[arg-type]  # not a str on purpose
    chat = session.create_branch(name="chat")
    with pytest.raises(ConfigurationError, match="branch name"):
        session.fork(chat, name="\udfff")
    message = Message(content=InstructionContent(instruction="hi"), metadata={"handle": Opaque()})
    with pytest.raises(ConfigurationError, match="metadata of message"):
        session.conversations.add_item(message, progressions=[chat])
    assert chat.order == ()  # nothing half-added
    assert len(session.messages) == 0
    assert [b.name for b in session.branches] == ["chat"]


async def test_metadata_mutated_later_is_refused_before_the_next_write(store_factory: Stores) -> None:
    async with store_factory.open() as store:
        session = Session(store=store)
        branch = session.create_branch(name="chat")
        await session.add_turn(branch, *_turn("fine"))

        session.metadata["handle"] = Opaque()
        with pytest.raises(ConfigurationError, match="session metadata"):
            await session.check_store()  # a turn checks this before its request: no model is called
        with pytest.raises(ConfigurationError, match="session metadata"):
            await session.add_turn(branch, *_turn("refused"))
        del session.metadata["handle"]

        branch.metadata["handle"] = Opaque()
        with pytest.raises(ConfigurationError, match="metadata of branch 'chat'"):
            await session.check_store()
        branch.metadata["handle"] = "a string now"
        await session.add_turn(branch, *_turn("stored"))
        await session.flush()
        loaded = await Session.load(store, session.id)
    contents = [m.chat_msg["content"] for m in loaded.get_branch("chat").messages if m.role == "user"]
    assert contents == ["fine", "stored"]
    assert loaded.get_branch("chat").metadata == {"handle": "a string now"}


def test_export_is_json_even_with_datetimes() -> None:
    import json

    session = Session(metadata={"started": WHEN})
    session.create_branch(name="chat", metadata={"opened": WHEN})
    data = session.export()
    assert json.loads(json.dumps(data)) == data
    assert data["session"]["metadata"] == {"started": "2026-01-02T03:04:05Z"}


async def test_a_nul_character_in_a_name_or_id_is_refused_before_any_store_sees_it(
    store_factory: Stores,
) -> None:
    # PostgreSQL's text cannot hold U+0000 (SQLite's can): refused up front, on every store, rather
    # than a branch that one store keeps and another can never write.
    with pytest.raises(ConfigurationError, match="session id"):
        Session(id="team\x00alice")
    async with store_factory.open() as store:
        session = Session(store=store)
        with pytest.raises(ConfigurationError, match="branch name"):
            session.create_branch(name="chat\x00")
        chat = session.create_branch(name="chat")
        with pytest.raises(ConfigurationError, match="branch name"):
            session.fork(chat, name="\x00")
        await session.add_turn(chat, *_turn("fine"))
        assert [branch.name for branch in session.branches] == ["chat"]
