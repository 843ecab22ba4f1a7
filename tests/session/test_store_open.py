"""Store problems surface early and as StoreError: bad paths, corrupt files, read-only databases."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from lionflow import (
    AssistantResponseContent,
    InstructionContent,
    Message,
    Session,
    SQLiteStore,
    StoreError,
)

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def _turn(text: str) -> tuple[Message, Message]:
    return (
        Message(content=InstructionContent(instruction=text)),
        Message(content=AssistantResponseContent(assistant_response="ok")),
    )


async def _stored_session(db: Path) -> str:
    async with SQLiteStore(db) as store:
        session = Session(store=store)
        await session.add_turn(session.create_branch(name="chat"), *_turn("kept"))
        return session.id


def test_a_path_in_a_missing_directory_or_a_directory_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        SQLiteStore(tmp_path / "missing" / "chat.db")
    with pytest.raises(StoreError, match="is a directory"):
        SQLiteStore(tmp_path)
    with pytest.raises(StoreError, match="does not exist"):
        SQLiteStore(tmp_path / "absent.db", read_only=True)  # read-only: nothing to create it


async def test_a_corrupt_file_raises_store_error_before_any_turn(tmp_path: Path) -> None:
    db = tmp_path / "garbage.db"
    db.write_bytes(os.urandom(8192))
    async with SQLiteStore(db) as store:
        session = Session(store=store)
        with pytest.raises(StoreError, match=r"garbage\.db") as caught:
            await session.check_store()
        assert isinstance(caught.value.__cause__, sqlite3.Error)
        with pytest.raises(StoreError):
            await store.list_sessions()
        with pytest.raises(StoreError) as failed:
            await session.add_turn(session.create_branch(name="chat"), *_turn("lost"))
        assert failed.value.session_id == session.id


async def test_sqlite_errors_while_reading_are_store_errors(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    session_id = await _stored_session(db)
    with closing(sqlite3.connect(db)) as raw:
        raw.execute("UPDATE messages SET data = 'not json'")
        raw.commit()
    async with SQLiteStore(db) as store:
        with pytest.raises(StoreError) as caught:
            await Session.load(store, session_id)
    assert caught.value.session_id == session_id


async def test_read_only_opens_list_and_load_and_refuses_writes(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    session_id = await _stored_session(db)
    before = db.read_bytes()
    async with SQLiteStore(db, read_only=True) as store:
        await store.check()
        assert [info.id for info in await store.list_sessions()] == [session_id]
        session = await Session.load(store, session_id)
        assert len(session.get_branch("chat")) == 2
        with pytest.raises(StoreError, match="read-only"):
            await session.check_store()  # a turn would fail to store: it fails before the request
        with pytest.raises(StoreError, match=r"read-only|readonly") as caught:
            await session.add_turn(session.get_branch("chat"), *_turn("refused"))
        assert caught.value.session_id == session_id
        with pytest.raises(StoreError, match=r"read-only|readonly"):
            await store.delete_session(session_id)
    assert db.read_bytes() == before


async def test_read_only_with_an_old_schema_says_it_needs_upgrading(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    sqlite3.connect(db).close()
    async with SQLiteStore(db, read_only=True) as store:
        with pytest.raises(StoreError, match="upgrade"):
            await store.list_sessions()


def _check_read_only(prefix: list[str], db: Path, session_id: str) -> subprocess.CompletedProcess[str]:
    """Make `db` and its folder read-only, then let another process open them without saying so.

    Root ignores file modes: as root, `unshare -U` runs that process as an unprivileged user in a
    user namespace of its own, where the owner's mode bits apply again. A non-root run needs none.
    """
    db.chmod(0o444)
    db.parent.chmod(0o555)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "tests.session.worker", "readonly", str(db), session_id],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


@pytest.fixture
def read_only_files(tmp_path: Path) -> Iterator[Path]:
    """A folder with mode 555 holding `chat.db` with mode 444; put back afterwards for cleanup."""
    folder = tmp_path / "ro"
    folder.mkdir()
    yield folder
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


async def test_a_read_only_file_and_folder_are_detected_and_still_readable(read_only_files: Path) -> None:
    db = read_only_files / "chat.db"
    session_id = await _stored_session(db)
    prefix = ["unshare", "-U"] if os.geteuid() == 0 else []
    result = _check_read_only(prefix, db, session_id)
    if prefix and result.returncode != 0 and "unshare" in result.stderr:
        pytest.skip(f"cannot drop root privileges here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["writable"] is False  # the modes really applied to the checking process
    assert seen["listed"] == [session_id]
    assert seen["loaded"] == 2
    assert seen["write_error"] == "StoreError"
    assert seen["new_file_error"] == "StoreError"  # a new database in the read-only folder
