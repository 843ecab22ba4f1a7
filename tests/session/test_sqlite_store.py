"""The stores (SQLite, and PostgreSQL where `store_factory` says so): durable write-through, load in
a fresh process, listing, deleting, export, schema."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from lionflow import ConfigurationError, InstructionContent, Message, Session, SQLiteStore
from lionflow.operations import communicate
from lionflow.session.stores import SCHEMA_VERSION, StoreClosed, StoreWrite
from lionflow.testing import ScriptedModel
from tests.session.conftest import Stores

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def _worker(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tests.session.worker", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_a_three_turn_conversation_survives_save_and_load_in_a_fresh_process(
    store_factory: Stores,
) -> None:
    db = store_factory.spec
    written = json.loads(_worker("write", db))
    loaded = json.loads(_worker("load", db, written["session"]["id"]))
    assert loaded == written  # messages, order, usage, metadata: identical
    (branch,) = loaded["branches"]
    assert len(branch["order"]) == 7  # system + three instruction/answer pairs
    answers = [m for m in loaded["messages"] if m["content"]["kind"] == "assistant_response"]
    assert [a["content"]["usage"]["input_tokens"] > 0 for a in answers] == [True] * 3
    assert answers[0]["content"]["reasoning"] == "thinking it over"
    assert loaded["session"]["metadata"] == {"owner": "worker"}


async def test_messages_are_written_through_as_they_are_added(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    async with SQLiteStore(db) as store:
        session = Session(store=store)
        branch = session.create_branch(name="chat")
        message = Message(content=InstructionContent(instruction="kept"))
        session.conversations.add_item(message, progressions=[branch.name])  # synchronous, as in the seed
        await session.flush()
        # another connection, as another process would see the file
        async with SQLiteStore(db) as other:
            again = await Session.load(other, session.id)
        assert again.get_branch("chat").messages == [message]
        assert await store.integrity_check() == "ok"
    with closing(sqlite3.connect(db)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_communicate_is_durable_when_it_returns(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    async with SQLiteStore(db) as store:
        session = Session(store=store)
        session.services.register(ScriptedModel(responses=["answer"]))
        await communicate(session, "chat", instruction="question")
        with closing(sqlite3.connect(db)) as raw:  # no flush: the turn is already on disk
            count = raw.execute(
                "SELECT count(*) FROM messages WHERE session_id = ?", (session.id,)
            ).fetchone()[0]
        assert count == 2


async def test_list_delete_export_and_import(store_factory: Stores) -> None:
    async with store_factory.open() as store:
        sessions = []
        for name in ("a", "b"):
            session = Session(store=store, metadata={"name": name})
            session.services.register(ScriptedModel())
            await communicate(session, "chat", instruction=f"hello {name}")
            sessions.append(session)
        listed = await store.list_sessions()
        assert {info.id for info in listed} == {s.id for s in sessions}
        assert all(info.message_count == 2 and info.branch_names == ["chat"] for info in listed)

        exported = await store.export_session(sessions[0].id)
        assert json.loads(json.dumps(exported)) == exported  # plain JSON
        assert await store.delete_session(sessions[0].id)
        assert not await store.delete_session(sessions[0].id)
        assert [info.id for info in await store.list_sessions()] == [sessions[1].id]
        with pytest.raises(KeyError):
            await Session.load(store, sessions[0].id)

        assert await store.import_session(exported) == sessions[0].id
        restored = await Session.load(store, sessions[0].id)
        assert restored.export() == exported
        with pytest.raises(ConfigurationError, match="not a lionflow session export"):
            await store.import_session({"format": "other"})


async def test_many_sessions_and_stores_share_one_database_under_concurrent_writes(
    store_factory: Stores,
) -> None:
    async with store_factory.open() as first, store_factory.open() as second:
        sessions = []
        for index in range(12):
            session = Session(store=(first, second)[index % 2])
            session.services.register(ScriptedModel(responses=lambda _: "reply", chunk_size=2))
            sessions.append(session)

        async def chat(session: Session) -> None:
            for turn in range(5):
                await communicate(session, "chat", instruction=f"turn {turn}")

        async with anyio.create_task_group() as group:
            for session in sessions:
                group.start_soon(chat, session)
        for session in sessions:
            loaded = await Session.load(first, session.id)
            assert loaded.export() == session.export()
            assert len(loaded.get_branch("chat")) == 10


async def test_the_event_loop_keeps_running_during_a_big_write(store_factory: Stores) -> None:
    async with store_factory.open() as store:
        session = Session(store=store)
        branch = session.create_branch(name="bulk")
        ticks = 0
        done = anyio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as group:
            group.start_soon(ticker)
            for index in range(3000):
                session.conversations.add_item(
                    Message(content=InstructionContent(instruction=f"m{index} " * 30)), progressions=[branch]
                )
            await session.flush()
            done.set()
        assert ticks > 100  # the loop ran while the store's thread wrote
        assert len((await Session.load(store, session.id)).messages) == 3000


async def test_a_closed_store_refuses_work(store_factory: Stores) -> None:
    store = store_factory.open()
    await store.list_sessions()
    await store.aclose()
    await store.aclose()  # twice is fine
    with pytest.raises(StoreClosed):
        await store.list_sessions()
    with pytest.raises(StoreClosed):
        store.submit(StoreWrite(session_id="s", session_created_at=datetime.now(UTC)))


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    with closing(sqlite3.connect(newer)) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    async with SQLiteStore(newer) as store:
        with pytest.raises(ConfigurationError, match="newer than this lionflow"):
            await store.list_sessions()


async def test_an_empty_database_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()  # a database at user_version 0, as before any lionflow schema
    async with SQLiteStore(path) as store:
        assert await store.list_sessions() == []
    with closing(sqlite3.connect(path)) as raw:
        tables = {name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"sessions", "messages", "branches", "branch_items"} <= tables
