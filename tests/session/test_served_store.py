"""What a store keeps for a server (`lionflow.serve`): its streams' events, for resuming, and its
answers' ids. SQLiteStore and PostgresStore run the real SQL; SQLite databases of the first
schema are upgraded."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lionflow.errors import ConfigurationError
from lionflow.session import Session, SQLiteStore
from lionflow.session.stores import EventBatch, ServedRecord, SessionStore
from lionflow.session.stores.base import wait_for
from tests.session.conftest import Stores

pytestmark = pytest.mark.anyio


async def test_events_append_in_batches_and_load_after_any_number(store_factory: Stores) -> None:
    async with store_factory.open() as store:
        await wait_for(store.submit_events((EventBatch("a", 1, (b"e1", b"e2")), EventBatch("b", 1, (b"x",)))))
        # A batch written again (a retry after a failure) adds nothing twice.
        await wait_for(store.submit_events((EventBatch("a", 1, (b"e1", b"e2")),)))
        await wait_for(store.submit_events((EventBatch("a", 3, (b"e3",), ended=True),)))
        everything = await store.load_events("a")
        assert everything is not None
        assert (everything.events, everything.ended) == ([b"e1", b"e2", b"e3"], True)
        later = await store.load_events("a", after=2)
        assert later is not None
        assert later.events == [b"e3"]
        unfinished = await store.load_events("b")
        assert unfinished is not None
        assert unfinished.ended is False
        assert await store.load_events("none") is None


async def test_streams_older_than_the_cutoff_are_dropped_with_their_events(store_factory: Stores) -> None:
    async with store_factory.open() as store:
        await wait_for(store.submit_events((EventBatch("old", 1, (b"e",) * 50, ended=True),)))
        assert await store.drop_events(before=datetime.now(UTC) - timedelta(hours=1)) == 0
        assert await store.drop_events(before=datetime.now(UTC) + timedelta(seconds=1)) == 1
        assert await store.load_events("old") is None
    assert store_factory.count("stream_events") == 0


async def test_served_records_are_replaced_by_id_and_deleted_with_their_session(
    store_factory: Stores,
) -> None:
    async with store_factory.open() as store:
        session = Session(store=store, id="conv")
        session.create_branch(name="main")
        await session.flush()
        now = datetime.now(UTC)
        running = ServedRecord("resp_1", "response", "conv", "main", None, {"status": "in_progress"}, now)
        await wait_for(store.submit_served(running))
        done = ServedRecord("resp_1", "response", "conv", "main", "m1", {"status": "completed"}, now)
        await wait_for(store.submit_served(done))
        assert await store.load_served("resp_1") == done
        assert await store.delete_session("conv")
        assert await store.load_served("resp_1") is None


async def test_a_database_of_the_first_schema_is_upgraded_and_keeps_its_sessions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    async with SQLiteStore(path) as store:
        session = Session(store=store, id="kept")
        session.create_branch(name="main", system="hello")
        await session.flush()
    with sqlite3.connect(path) as raw:  # as lionflow before served streams left it
        for table in ("stream_events", "streams", "served"):
            raw.execute(f"DROP TABLE {table}")
        raw.execute("PRAGMA user_version = 1")
    async with SQLiteStore(path) as store:
        assert (await Session.load(store, "kept")).get_branch("main").messages[0].chat_msg[
            "content"
        ] == "hello"
        await wait_for(store.submit_events((EventBatch("s", 1, (b"e",)),)))
        assert await store.load_events("s") is not None


async def test_a_store_without_served_streams_says_so() -> None:
    class Bare(SessionStore):
        def submit(self, write):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        async def load_session(self, session_id):  # type: ignore[no-untyped-def]
            return None

        async def list_sessions(self):  # type: ignore[no-untyped-def]
            return []

        async def delete_session(self, session_id):  # type: ignore[no-untyped-def]
            return False

    with pytest.raises(ConfigurationError, match="Bare keeps no served streams"):
        await Bare().load_events("s")
    assert Bare.keeps_served is False
