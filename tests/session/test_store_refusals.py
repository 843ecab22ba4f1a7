"""What a store refuses, and how: another application's database, a read-only copy whose -wal it
cannot see, bad arguments and malformed exports."""

from __future__ import annotations

import copy
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from lionflow import (
    AssistantResponseContent,
    ConfigurationError,
    InstructionContent,
    Message,
    Session,
    SQLiteStore,
    StoreError,
)
from tests.session.conftest import Stores

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def _turn(text: str) -> tuple[Message, Message]:
    return (
        Message(content=InstructionContent(instruction=text)),
        Message(content=AssistantResponseContent(assistant_response="ok")),
    )


async def test_another_applications_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with closing(sqlite3.connect(db)) as other:
        other.execute("CREATE TABLE customers (name TEXT)")
        other.execute("INSERT INTO customers VALUES ('alice')")
        other.commit()
    async with SQLiteStore(db) as store:
        with pytest.raises(StoreError, match="not a lionflow database"):
            await store.check(writable=True)
        session = Session(store=store)
        with pytest.raises(StoreError, match="not a lionflow database"):
            await session.flush()
    with closing(sqlite3.connect(db)) as other:
        tables = [name for (name,) in other.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert tables == ["customers"]
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


async def test_an_empty_file_becomes_a_lionflow_database(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    db.touch()
    async with SQLiteStore(db) as store:
        session = Session(store=store)
        await session.add_turn(session.create_branch("chat"), *_turn("A"))
        assert len((await Session.load(store, session.id)).get_branch("chat")) == 2


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "ro"
    folder.mkdir()
    yield folder
    folder.chmod(0o755)


def _read_from(folder: Path, session_id: str) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Make `folder` read-only, then load the session from its chat.db in another process."""
    assert os.path.getsize(folder / "chat.db-wal") > 0
    folder.chmod(0o555)
    # Root ignores file modes: `unshare -U` runs the reader as an unprivileged user of its own.
    prefix = ["unshare", "-U"] if os.geteuid() == 0 else []
    code = (
        "import sys, anyio\n"
        "from lionflow import Session, SQLiteStore, StoreError\n"
        "async def main():\n"
        "    async with SQLiteStore(sys.argv[1]) as store:\n"
        "        try:\n"
        "            print(len((await Session.load(store, sys.argv[2])).get_branch('chat')))\n"
        "        except StoreError as error:\n"
        "            print('StoreError', error)\n"
        "anyio.run(main)\n"
    )
    result = subprocess.run(
        [*prefix, sys.executable, "-c", code, str(folder / "chat.db"), session_id],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    return prefix, result


async def test_a_read_only_copy_with_unseen_committed_writes_is_refused(read_only_folder: Path) -> None:
    # A database and its -wal copied (without the -shm) into a folder this process may not
    # write: it can only be opened as immutable, which would not see the turns in the -wal.
    db = read_only_folder.parent / "chat.db"
    async with SQLiteStore(db) as store:
        session = Session(store=store)
        await session.add_turn(session.create_branch("chat"), *_turn("checkpointed"))
    async with SQLiteStore(db) as store:
        again = await Session.load(store, session.id)
        await again.add_turn(again.get_branch("chat"), *_turn("in the wal"))
        for suffix in ("", "-wal"):
            shutil.copy(f"{db}{suffix}", f"{read_only_folder / 'chat.db'}{suffix}")
    prefix, result = _read_from(read_only_folder, session.id)
    if prefix and result.returncode != 0 and "unshare" in result.stderr:
        pytest.skip(f"cannot drop root privileges here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("StoreError"), result.stdout  # not "2": two turns of four lost
    assert "write access" in result.stdout


@pytest.mark.parametrize(
    ("path", "timeout"),
    [(b"chat.db", 1.0), ("chat\0.db", 1.0), (42, 1.0), ("chat.db", -1), ("chat.db", "5"), ("chat.db", True)],
)
def test_a_path_or_busy_timeout_of_the_wrong_kind_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: object, timeout: object
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError):
        SQLiteStore(path, busy_timeout=timeout)  # type: ignore[arg-type]  # wrong kinds on purpose
    assert list(tmp_path.iterdir()) == []


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["branches"][0].pop(key)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda data: data.pop("session"),
        lambda data: data["session"].update(created_at="yesterday"),
        lambda data: data["session"].update(created_at=12),
        lambda data: data["session"].update(id=None),
        lambda data: data["session"].update(metadata={"score": float("nan")}),
        _drop("order"),
        _drop("name"),
        lambda data: data["branches"][0].update(name="a\udc80"),
        lambda data: data["branches"][0].update(order="abc"),
        lambda data: data["branches"].append(dict(data["branches"][0])),
        lambda data: data["messages"][0].update(content=5),
        lambda data: data["messages"].append({**data["messages"][0], "created_at": "2001-01-01T00:00:00"}),
        lambda data: data.update(messages=7),
    ],
    ids=[
        "no-session",
        "bad-date",
        "date-not-text",
        "no-session-id",
        "nan-metadata",
        "no-order",
        "no-name",
        "surrogate-name",
        "order-not-a-list",
        "same-branch-twice",
        "bad-message",
        "two-messages-one-id",
        "messages-not-a-list",
    ],
)
async def test_malformed_export_data_is_a_configuration_error(
    store_factory: Stores, spoil: Callable[[dict[str, Any]], None]
) -> None:
    source = Session()
    await source.add_turn(source.create_branch("chat", system="Be brief."), *_turn("A"))
    data = copy.deepcopy(source.export())
    spoil(data)
    async with store_factory.open() as store:
        with pytest.raises(ConfigurationError):
            await Session.from_export(data, store=store)
        assert await store.list_sessions() == []


async def test_data_that_is_not_an_export_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not a lionflow session export"):
        await Session.from_export([1])  # type: ignore[arg-type]  # not a dict on purpose
