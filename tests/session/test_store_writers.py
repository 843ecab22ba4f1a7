"""Many writers on one stored session: two processes adding turns at once both keep every turn,
whole, each at a place of its own (SQLite and PostgreSQL, see `store_factory`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lionflow import Session
from tests.session.conftest import Stores

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def _appender(spec: str, session_id: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.session.worker", "append", spec, session_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "READY":
        raise AssertionError(f"worker ended early: {line} {process.stderr.read() if process.stderr else ''}")
    return process


async def test_two_processes_adding_turns_to_one_session_at_once_keep_them_all(store_factory: Stores) -> None:
    async with store_factory.open() as store:
        session = Session(store=store)
        session.create_branch("chat", system="Be brief.")
        await session.flush()
    workers = [_appender(store_factory.spec, session.id) for _ in range(2)]
    for worker in workers:  # both loaded the session; now both write at once
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        assert out.strip() == "DONE"

    async with store_factory.open() as store:
        loaded = await Session.load(store, session.id)
    messages = loaded.get_branch("chat").messages
    assert messages[0].role == "system"
    pairs = messages[1:]
    assert len(pairs) == 2 * 2 * 60  # every turn of both writers
    assert len({message.id for message in pairs}) == len(pairs)  # each at a place of its own
    questions = []
    for question, answer in zip(pairs[::2], pairs[1::2], strict=True):
        # whole turns: each instruction is followed by its own answer, which quotes it
        assert (question.role, answer.role) == ("user", "assistant")
        assert answer.chat_msg["content"] == f"re: {question.chat_msg['content']}"
        questions.append(str(question.chat_msg["content"]).split())
    by_writer: dict[str, list[int]] = {}
    for pid, turn in questions:
        by_writer.setdefault(pid, []).append(int(turn))
    assert sorted(by_writer) == sorted(str(worker.pid) for worker in workers)
    assert all(turns == list(range(60)) for turns in by_writer.values())  # each writer's in its order
