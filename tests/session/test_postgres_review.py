"""PostgresStore under what production does to it: a task cancelled while its read or delete waits
(for a lock held by another writer, for a server that is away), an application role that may use
the store's tables but not create them, and a dsn that libpq cannot parse but that holds a password."""

from __future__ import annotations

import threading

import anyio
import psycopg
import pytest

from lionflow import (
    ConfigurationError,
    PostgresStore,
    Session,
    StoreError,
)
from tests.session.conftest import PostgresStores, Stores, turn
from tests.session.postgres import PostgresServer

pytestmark = pytest.mark.anyio


class _Holder:
    """Another writer holding the store's write lock from a thread of its own, until told to let go
    (or, so that a store that cannot be cancelled fails the test rather than hanging it, 20 s)."""

    def __init__(self, stores: Stores) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        self.gave_up = False
        self.thread = threading.Thread(target=self._hold, args=(stores,), daemon=True)

    def _hold(self, stores: Stores) -> None:
        with stores.blocked():
            self.held.set()
            self.gave_up = not self.release.wait(20)

    def __enter__(self) -> _Holder:
        self.thread.start()
        assert self.held.wait(20)
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self.thread.join()


async def test_a_delete_waiting_for_another_writer_can_be_cancelled(store_factory: Stores) -> None:
    async with store_factory.open() as store:
        session = Session(store=store)
        await session.add_turn(session.create_branch("chat"), *turn("A"))
        with _Holder(store_factory) as holder:
            with pytest.raises(TimeoutError), anyio.fail_after(0.5):
                await store.delete_session(session.id)
            # the cancellation reached the caller while the other writer still held its lock
            assert not holder.gave_up
        assert [info.id for info in await store.list_sessions()] in ([session.id], [])


async def test_a_read_waiting_for_a_server_that_is_away_can_be_cancelled(own_server: PostgresServer) -> None:
    dsn = own_server.database()
    async with PostgresStore(dsn, timeout=20.0) as store:
        await store.setup()
        own_server.stop()
        with pytest.raises(TimeoutError), anyio.fail_after(0.5):
            await store.list_sessions()  # a StoreError only after 20 s: too late
        with pytest.raises(TimeoutError), anyio.fail_after(0.5):
            await store.load_session("some-id")
        own_server.start()
        with anyio.fail_after(30):
            assert await store.list_sessions() == []


async def test_a_role_that_may_only_use_the_tables_can_use_the_store(postgres_stores: PostgresStores) -> None:
    """Deployments migrate with an owner (`setup()`) and run with a role that cannot create."""
    async with postgres_stores.open() as owner:
        await owner.setup()
    with psycopg.connect(postgres_stores.dsn, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS lionflow_app")
        admin.execute("CREATE ROLE lionflow_app LOGIN")
        admin.execute("GRANT USAGE ON SCHEMA lionflow TO lionflow_app")
        admin.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA lionflow TO lionflow_app")
        admin.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA lionflow TO lionflow_app")
        admin.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    dsn = postgres_stores.dsn.replace("user=postgres", "user=lionflow_app")
    try:
        async with PostgresStore(dsn) as store:
            session = Session(store=store)
            await session.add_turn(session.create_branch("chat"), *turn("A"))
            loaded = await Session.load(store, session.id)
            assert len(loaded.get_branch("chat")) == 2
    finally:
        with psycopg.connect(postgres_stores.dsn, autocommit=True) as admin:
            admin.execute("DROP OWNED BY lionflow_app")
            admin.execute("DROP ROLE lionflow_app")


async def test_a_newer_schema_is_refused_before_any_lock_is_taken(postgres_stores: PostgresStores) -> None:
    async with postgres_stores.open() as owner:
        await owner.setup()
    with psycopg.connect(postgres_stores.dsn, autocommit=True) as admin:
        admin.execute("UPDATE lionflow.schema_version SET version = 99")
    async with postgres_stores.open() as store:
        with pytest.raises(ConfigurationError, match="newer than this lionflow"):
            await store.setup()


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://app:hun%zzter2@127.0.0.1/chat", "host=127.0.0.1 password=hunter2 sekrit"],
)
async def test_a_dsn_libpq_cannot_parse_is_refused_without_its_password(dsn: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        PostgresStore(dsn)
    assert "hun" not in str(caught.value)
    assert "sekrit" not in str(caught.value)


async def test_a_store_error_never_holds_the_password(own_server: PostgresServer) -> None:
    dsn = own_server.database()
    own_server.stop()
    store = PostgresStore(f"{dsn} password=hunter2", timeout=0.5)
    try:
        assert "hunter2" not in repr(store)
        with pytest.raises(StoreError) as caught:
            await store.setup()
        assert "hunter2" not in str(caught.value)
        assert "hunter2" not in repr(caught.value)
    finally:
        await store.aclose()
