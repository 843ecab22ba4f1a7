"""What only PostgresStore has: a server that goes away and comes back, an unreachable database,
a schema created once by many processes starting at once, and its arguments."""

from __future__ import annotations

import anyio
import psycopg
import pytest

from lionflow import (
    AssistantResponseContent,
    ConfigurationError,
    PostgresStore,
    Session,
    StoreError,
)
from lionflow.operations import communicate
from lionflow.testing import ScriptedModel
from tests.session.conftest import PostgresStores, turn
from tests.session.postgres import PostgresServer

pytestmark = pytest.mark.anyio


def _questions(session: Session) -> list[str]:
    return [str(m.chat_msg["content"]) for m in session.get_branch("chat").messages if m.role == "user"]


async def test_a_server_stopped_mid_stream_fails_that_turn_and_the_next_turn_is_stored(
    own_server: PostgresServer,
) -> None:
    async with PostgresStore(own_server.database(), timeout=1.0) as store:
        session = Session(store=store)
        session.services.register(
            ScriptedModel(name="slow", responses=lambda _: "slowly " * 10, chunk_size=7, delay=0.02)
        )
        await communicate(session, "chat", instruction="first")

        turn = communicate(session, "chat", instruction="second")
        with pytest.raises(StoreError) as caught:
            seen = 0
            async for _chunk in turn:
                seen += 1
                if seen == 2:
                    own_server.stop()  # the database goes away while the answer streams
        assert caught.value.session_id == session.id
        assert caught.value.turn == turn.instruction.id
        assert session.id in str(caught.value)
        assert isinstance(caught.value.__cause__, psycopg.Error)
        assert _questions(session) == ["first", "second"]  # the turn stays in memory, whole
        answer = session.get_branch("chat").messages[-1].content
        assert isinstance(answer, AssistantResponseContent)
        assert answer.assistant_response == "slowly " * 10

        own_server.start()
        await communicate(session, "chat", instruction="third")  # recovers on the next turn
        stored = await Session.load(store, session.id)
        assert _questions(stored) == ["first", "third"]

        own_server.stop()  # a restart between turns: the broken connections are replaced
        own_server.start()
        await communicate(session, "chat", instruction="fourth")
        assert _questions(await Session.load(store, session.id)) == ["first", "third", "fourth"]


async def test_an_unreachable_database_is_a_store_error_before_any_model_is_called(
    own_server: PostgresServer,
) -> None:
    dsn = own_server.database()
    own_server.stop()
    requests: list[object] = []

    def answer(messages: list[dict[str, object]]) -> str:
        requests.append(messages)
        return "answer"

    model = ScriptedModel(name="m", responses=answer)
    async with PostgresStore(f"{dsn} password=hunter2", timeout=0.5) as store:
        session = Session(store=store)
        session.services.register(model)
        with pytest.raises(StoreError) as caught:
            await communicate(session, "chat", instruction="never sent")
        assert isinstance(caught.value.__cause__, psycopg.Error)
        assert "hunter2" not in str(caught.value)
        assert requests == []  # check_store failed first
        with pytest.raises(StoreError) as failed:
            await session.add_turn(session.create_branch("other"), *turn("kept in memory"))
        assert failed.value.session_id == session.id
        assert isinstance(failed.value.__cause__, psycopg.Error)
        with pytest.raises(StoreError):
            await store.list_sessions()
        with pytest.raises(StoreError) as loading:
            await Session.load(store, "some-id")
        assert loading.value.session_id == "some-id"


async def test_many_stores_setting_up_one_new_database_at_once_create_the_schema_once(
    postgres_stores: PostgresStores,
) -> None:
    stores = [postgres_stores.open() for _ in range(6)]
    try:
        async with anyio.create_task_group() as group:
            for store in stores:
                group.start_soon(store.setup)
        session = Session(store=stores[0])
        await session.add_turn(session.create_branch("chat"), *turn("A"))
        assert _questions(await Session.load(stores[-1], session.id)) == ["A"]
    finally:
        for store in stores:
            await store.aclose()
    with psycopg.connect(postgres_stores.dsn) as raw:
        assert raw.execute("SELECT version FROM lionflow.schema_version").fetchall() == [(1,)]


async def test_a_schema_newer_than_this_lionflow_is_refused(postgres_stores: PostgresStores) -> None:
    async with postgres_stores.open() as store:
        await store.setup()
    with psycopg.connect(postgres_stores.dsn) as raw:
        raw.execute("UPDATE lionflow.schema_version SET version = 99")
    async with postgres_stores.open() as store:
        with pytest.raises(ConfigurationError, match="newer than this lionflow"):
            await store.list_sessions()


async def test_a_schema_of_ones_own_keeps_sessions_apart(postgres_stores: PostgresStores) -> None:
    async with (
        PostgresStore(postgres_stores.dsn, schema="team-a") as first,
        PostgresStore(postgres_stores.dsn, schema="team-b") as second,
    ):
        session = Session(store=first)
        await session.add_turn(session.create_branch("chat"), *turn("A"))
        assert [info.id for info in await first.list_sessions()] == [session.id]
        assert await second.list_sessions() == []


@pytest.mark.parametrize(
    "arguments",
    [
        {"dsn": 5},
        {"pool_size": 0},
        {"pool_size": True},
        {"timeout": 0},
        {"timeout": "5"},
        {"lock_timeout": -1},
        {"schema": ""},
    ],
)
def test_arguments_of_the_wrong_kind_are_configuration_errors(arguments: dict[str, object]) -> None:
    options = {"dsn": "host=127.0.0.1", **arguments}
    with pytest.raises(ConfigurationError):
        PostgresStore(**options)  # type: ignore[arg-type]  # wrong kinds on purpose
