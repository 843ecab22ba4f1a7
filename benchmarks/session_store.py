"""SQLite session store: turns per second written through, and the time to load a big session.

    .venv/bin/python benchmarks/session_store.py [--turns 400] [--messages 10000]

A turn is one `communicate` call on ScriptedModel (no delay): the instruction and the answer
written in one transaction, durable when the call returns. Measured one session at a time and
eight sessions at once, with ``synchronous="full"`` (the default: each commit survives power loss)
and ``"normal"`` (survives a process crash). Then a session of --messages messages is stored in
one import and loaded back with `Session.load`, best of 3; and turns are appended to that long
branch (the store finds each new position from the stored branch, inside the transaction, so this
shows whether a long branch makes appending slower).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Literal

import anyio

from lionflow import AssistantResponseContent, InstructionContent, Message, Session, SQLiteStore
from lionflow.operations import communicate
from lionflow.testing import ScriptedModel


def _model() -> ScriptedModel:
    return ScriptedModel(responses=lambda _: "A short answer of a few words.", chunk_size=8)


async def _turns(store: SQLiteStore, sessions: int, turns: int) -> float:
    runs = []
    for _ in range(sessions):
        session = Session(store=store)
        session.services.register(_model())
        runs.append(session)

    async def chat(session: Session) -> None:
        for turn in range(turns // sessions):
            await communicate(session, "chat", instruction=f"question {turn}")

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for session in runs:
            group.start_soon(chat, session)
    return (turns // sessions * sessions) / (time.perf_counter() - started)


async def _load_and_append(folder: Path, count: int, turns: int) -> tuple[float, float]:
    session = Session()
    branch = session.create_branch(name="chat")
    for index in range(count):
        session.conversations.add_item(
            Message(content=InstructionContent(instruction=f"message {index}: " + "word " * 30)),
            progressions=[branch],
        )
    async with SQLiteStore(folder / "big.db", synchronous="normal") as store:
        await store.import_session(session.export())
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            loaded = await Session.load(store, session.id)
            timings.append(time.perf_counter() - started)
            assert len(loaded.messages) == count
        branch = loaded.get_branch("chat")
        started = time.perf_counter()
        for turn in range(turns):
            await loaded.add_turn(
                branch,
                Message(content=InstructionContent(instruction=f"question {turn}")),
                Message(content=AssistantResponseContent(assistant_response="answer")),
            )
        rate = turns / (time.perf_counter() - started)
    return min(timings), rate


async def main(turns: int, messages: int) -> None:
    modes: tuple[Literal["full", "normal"], ...] = ("full", "normal")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        print(f"{turns} turns per run (2 messages each, one transaction per turn)\n")
        print(f"{'synchronous':<14}{'1 session':>14}{'8 sessions':>14}")
        for mode in modes:
            rates = []
            for sessions in (1, 8):
                async with SQLiteStore(folder / f"{mode}-{sessions}.db", synchronous=mode) as store:
                    rates.append(await _turns(store, sessions, turns))
            print(f"{mode:<14}{rates[0]:>9,.0f} t/s{rates[1]:>9,.0f} t/s")
        seconds, rate = await _load_and_append(folder, messages, turns)
        print(f"\nload a session of {messages:,} messages: {seconds * 1000:,.0f} ms")
        print(f"append turns to its branch (synchronous=normal): {rate:,.0f} t/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    anyio.run(main, args.turns, args.messages)
