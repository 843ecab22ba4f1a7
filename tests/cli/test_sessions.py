"""`lionflow sessions`: the sessions `compare --save` (or anything else) stored, listed, shown,
exported and deleted from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from lionflow.session.session import Session
from lionflow.session.stores import SQLiteStore

REPLIES = {"a": "alpha reply", "b": "bravo reply", "c": "charlie reply"}
PROMPT = "Say your name"


def lionflow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "XDG_DATA_HOME": str(tmp_path / "data")}
    return subprocess.run(
        [sys.executable, "-m", "lionflow", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def _save(tmp_path: Path, *db: str) -> str:
    """Run `compare --save` on three scripted models; the stored session's id."""
    args = ["compare", PROMPT, "--save", *db]
    for name, reply in REPLIES.items():
        args += ["-m", f"{name}=scripted:echo", "-o", f"{name}.responses={json.dumps([reply])}"]
    result = lionflow(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    listed = lionflow(tmp_path, "sessions", "list", "--json", *db)
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    info: dict[str, Any] = json.loads(line)
    assert info["branches"] == ["a", "b", "c"]
    assert info["messages"] == 6
    return str(info["id"])


@pytest.fixture
def db(tmp_path: Path) -> list[str]:
    return ["--db", str(tmp_path / "s.db")]


def test_list_and_show_a_saved_comparison(tmp_path: Path, db: list[str]) -> None:
    session_id = _save(tmp_path, *db)
    listed = lionflow(tmp_path, "sessions", "list", *db)
    assert session_id in listed.stdout
    assert "a, b, c" in listed.stdout
    shown = lionflow(tmp_path, "sessions", "show", session_id[:6], *db)  # a unique start of the id
    assert shown.returncode == 0, shown.stderr
    for name, reply in REPLIES.items():
        assert f"branch {name} (2 messages)" in shown.stdout
        assert reply in shown.stdout
    assert shown.stdout.count(f"[user] {PROMPT}") == 3


def test_json_export_round_trips(tmp_path: Path, db: list[str]) -> None:
    session_id = _save(tmp_path, *db)
    out = tmp_path / "session.json"
    exported = lionflow(tmp_path, "sessions", "export", session_id, "-o", str(out), *db)
    assert exported.returncode == 0
    assert exported.stdout == ""
    data = json.loads(out.read_text())
    assert data == json.loads(lionflow(tmp_path, "sessions", "export", session_id, *db).stdout)
    copy = tmp_path / "copy.db"

    async def reload() -> None:
        assert (await Session.from_export(data)).export() == data
        async with SQLiteStore(copy) as store:
            await store.import_session(data)

    anyio.run(reload)
    # Imported into another file, the session exports as the same JSON.
    again = lionflow(tmp_path, "sessions", "export", session_id, "--db", str(copy))
    assert json.loads(again.stdout) == data


def test_markdown_export_has_every_turn(tmp_path: Path, db: list[str]) -> None:
    session_id = _save(tmp_path, *db)
    result = lionflow(tmp_path, "sessions", "export", session_id, "--format", "markdown", *db)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith(f"# Session {session_id}")
    for name, reply in REPLIES.items():
        section = text.split(f"## Branch `{name}`")[1].split("## Branch")[0]
        assert f"**user**\n\n{PROMPT}" in section
        assert f"**assistant (scripted:echo)**\n\n{reply}" in section


def test_delete_needs_yes(tmp_path: Path, db: list[str]) -> None:
    session_id = _save(tmp_path, *db)
    refused = lionflow(tmp_path, "sessions", "delete", session_id, *db)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "--yes" in refused.stderr
    assert session_id in lionflow(tmp_path, "sessions", "list", *db).stdout
    deleted = lionflow(tmp_path, "sessions", "delete", session_id, "--yes", *db)
    assert deleted.returncode == 0, deleted.stderr
    assert lionflow(tmp_path, "sessions", "list", "--json", *db).stdout == ""


def test_the_default_database_is_the_documented_user_path(tmp_path: Path) -> None:
    session_id = _save(tmp_path)  # no --db, on either command
    assert (tmp_path / "data" / "lionflow" / "lionflow.db").exists()
    assert session_id in lionflow(tmp_path, "sessions", "list").stdout


def test_a_session_is_found_by_its_name(tmp_path: Path, db: list[str]) -> None:
    async def store_named() -> str:
        async with SQLiteStore(db[1]) as store:
            session = Session(store=store, metadata={"name": "tea"})
            session.create_branch("main", system="Be brief.")
            await session.flush()
            return session.id

    session_id = anyio.run(store_named)
    shown = lionflow(tmp_path, "sessions", "show", "tea", *db)
    assert shown.returncode == 0, shown.stderr
    assert f"session {session_id} (tea)" in shown.stdout
    assert "[system] Be brief." in shown.stdout
    assert "tea" in lionflow(tmp_path, "sessions", "list", *db).stdout


def test_expected_errors_are_one_line(tmp_path: Path, db: list[str]) -> None:
    missing = lionflow(tmp_path, "sessions", "list", "--db", str(tmp_path / "none.db"))
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("these are notes, not a database\n" * 100)
    unreadable = lionflow(tmp_path, "sessions", "list", "--db", str(not_a_db))
    _save(tmp_path, *db)
    unknown = lionflow(tmp_path, "sessions", "show", "nosuchsession", *db)
    for result, words in ((missing, "no database at"), (unreadable, "notes.db"), (unknown, "no session")):
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("lionflow: ")
        assert words in result.stderr
    usage = lionflow(tmp_path, "sessions", "export", "x", "--format", "html", *db)
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr
    helped = lionflow(tmp_path, "sessions", "--help")
    assert helped.returncode == 0
    assert "lionflow sessions export" in helped.stdout
