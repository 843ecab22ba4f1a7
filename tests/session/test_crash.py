"""Crash safety: a process killed with SIGKILL leaves a sound database with only whole turns
(SQLite and PostgreSQL, see `store_factory`)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from lionflow import AssistantResponseContent, InstructionContent, Session
from tests.session.conftest import SQLiteStores, Stores

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def _start(mode: str, db: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.session.worker", mode, db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"worker ended early: {process.stderr.read() if process.stderr else ''}")
    return process, line.split()[1]


def _kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()
    assert process.returncode == -signal.SIGKILL


def _integrity(stores: Stores) -> str:
    if not isinstance(stores, SQLiteStores):
        return "ok"  # PostgreSQL checks its own: a commit is whole or absent
    with closing(sqlite3.connect(stores.path)) as raw:
        return str(raw.execute("PRAGMA integrity_check").fetchone()[0])


def _assert_whole_turns(session: Session) -> int:
    """Every instruction in the branch is followed by its answer; returns the number of turns."""
    messages = session.get_branch("chat").messages
    assert messages[0].role == "system"
    pairs = messages[1:]
    assert len(pairs) % 2 == 0, [m.role for m in pairs]
    for question, answer in zip(pairs[::2], pairs[1::2], strict=True):
        assert isinstance(question.content, InstructionContent)
        assert isinstance(answer.content, AssistantResponseContent)
        assert not answer.content.incomplete
        assert answer.content.assistant_response.startswith("answer ")
    return len(pairs) // 2


async def test_sigkill_in_the_middle_of_a_streamed_turn(store_factory: Stores) -> None:
    process, session_id = _start("midstream", store_factory.spec)
    _kill(process)
    assert _integrity(store_factory) == "ok"
    async with store_factory.open() as store:
        session = await Session.load(store, session_id)
    assert _assert_whole_turns(session) == 3  # the completed turns, intact; the killed one absent
    assert "question 3" not in {m.chat_msg["content"] for m in session.messages.values()}


async def test_sigkill_at_random_moments_of_back_to_back_turns(store_factory: Stores) -> None:
    rng = random.Random(7)
    for _attempt in range(4):
        process, session_id = _start("hammer", store_factory.spec)
        await anyio.sleep(rng.uniform(0.2, 0.8))
        _kill(process)
        assert _integrity(store_factory) == "ok"
        async with store_factory.open() as store:
            session = await Session.load(store, session_id)
        assert _assert_whole_turns(session) >= 1
        await anyio.lowlevel.checkpoint()
