"""A separate process for the persistence tests: ``python -m tests.session.worker MODE DB [SESSION_ID]``.

DB is an SQLite file, or ``pg:`` and a PostgreSQL dsn (see `store_factory.spec` in conftest.py).

- ``write``: a three-turn conversation in DB; prints the session's export as JSON.
- ``load``: loads SESSION_ID from DB in this fresh process; prints its export as JSON.
- ``midstream``: three complete turns, then a slow streamed fourth; prints ``STREAMING <id>``
  once the fourth is under way, and waits to be killed.
- ``hammer``: turns back to back as fast as possible; prints ``STARTED <id>``, then waits to be killed.
- ``append``: loads SESSION_ID, prints ``READY``, waits for a line on stdin, then adds 60 turns
  to its branch "chat" (instructions ``<pid> <n>``) and prints ``DONE``.
- ``readonly``: opens DB (a read-only file in a read-only folder) without saying so, lists, loads
  SESSION_ID and tries a turn; then tries a new database beside it. Prints what happened as JSON.
"""

from __future__ import annotations

import json
import os
import sys

import anyio

from lionflow import (
    AssistantResponseContent,
    InstructionContent,
    Message,
    PostgresStore,
    Session,
    SQLiteStore,
    StoreError,
)
from lionflow.operations import communicate
from lionflow.testing import ScriptedModel, ScriptedReply


def _model(*, chunk_size: int = 4, delay: float = 0.0) -> ScriptedModel:
    return ScriptedModel(
        responses=lambda messages: ScriptedReply(
            text=f"answer {len(messages) // 2}: " + "words " * 20, metadata={"turn": len(messages) // 2}
        ),
        reasoning="thinking it over",
        name="scripted",
        chunk_size=chunk_size,
        delay=delay,
    )


async def _turns(session: Session, count: int) -> None:
    branch = session.get_branch("chat")
    for turn in range(count):
        await communicate(session, branch, instruction=f"question {turn}", temperature=0.5)


async def _read_only(path: str, session_id: str) -> dict[str, object]:
    seen: dict[str, object] = {"writable": os.access(path, os.W_OK)}
    async with SQLiteStore(path) as store:
        seen["listed"] = [info.id for info in await store.list_sessions()]
        session = await Session.load(store, session_id)
        seen["loaded"] = len(session.get_branch("chat"))
        turn = (
            Message(content=InstructionContent(instruction="refused")),
            Message(content=AssistantResponseContent(assistant_response="ok")),
        )
        try:
            await session.add_turn(session.get_branch("chat"), *turn)
            seen["write_error"] = None
        except StoreError as error:
            seen["write_error"] = type(error).__name__
    try:
        SQLiteStore(os.path.join(os.path.dirname(path), "new.db"))
        seen["new_file_error"] = None
    except StoreError as error:
        seen["new_file_error"] = type(error).__name__
    return seen


def _store(spec: str) -> SQLiteStore | PostgresStore:
    if spec.startswith("pg:"):
        return PostgresStore(spec.removeprefix("pg:"))
    return SQLiteStore(spec)


async def main(mode: str, path: str, session_id: str | None) -> None:
    if mode == "readonly":
        assert session_id is not None
        print(json.dumps(await _read_only(path, session_id)))
        return
    async with _store(path) as store:
        if mode == "append":
            assert session_id is not None
            shared = await Session.load(store, session_id)
            # the answer quotes its instruction: the test sees that each turn is whole
            shared.services.register(
                ScriptedModel(name="echo", responses=lambda messages: f"re: {messages[-1]['content']}")
            )
            print("READY", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            for turn in range(60):
                await communicate(shared, "chat", instruction=f"{os.getpid()} {turn}")
            print("DONE", flush=True)
            return
        if mode == "load":
            assert session_id is not None
            print(json.dumps((await Session.load(store, session_id)).export()))
            return
        session = Session(store=store, metadata={"owner": "worker"})
        session.create_branch(name="chat", system="Be brief.")
        if mode == "write":
            session.services.register(_model())
            await _turns(session, 3)
            await session.flush()
            print(json.dumps(session.export()))
        elif mode == "midstream":
            session.services.register(_model())
            await _turns(session, 3)
            session.services.register(_model(chunk_size=2, delay=0.05), name="slow")
            seen = 0
            async for _chunk in communicate(session, "chat", instruction="question 3", imodel="slow"):
                seen += 1
                if seen == 3:
                    print(f"STREAMING {session.id}", flush=True)
        elif mode == "hammer":
            session.services.register(_model())
            print(f"STARTED {session.id}", flush=True)
            await _turns(session, 1_000_000)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
