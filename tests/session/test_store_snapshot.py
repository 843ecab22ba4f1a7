"""Loading a session reads one snapshot: a load that runs while another store writes turns never
sees a branch that names a message it did not load."""

from __future__ import annotations

import threading

import anyio
import pytest

from lionflow.session import Session
from lionflow.session.messages import Message
from lionflow.session.messages.content import AssistantResponseContent, InstructionContent
from tests.session.conftest import Stores

pytestmark = pytest.mark.anyio


async def test_a_load_during_writes_sees_every_message_its_branches_name(store_factory: Stores) -> None:
    async with store_factory.open() as store:
        session = Session(store=store, id="busy")
        session.create_branch(name="chat")
        await session.flush()
    stop = threading.Event()

    def write() -> None:
        async def turns() -> None:
            async with store_factory.open() as store:
                writer = await Session.load(store, "busy")
                for _ in range(400):  # (a load reads the whole session: it stays small)
                    if stop.is_set():
                        break
                    question = Message(content=InstructionContent(instruction="q"))
                    answer = Message(content=AssistantResponseContent(assistant_response="a"))
                    await writer.add_turn(writer.get_branch("chat"), question, answer)

        anyio.run(turns)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        async with store_factory.open() as reader:
            for _ in range(60):
                loaded = await Session.load(reader, "busy")
                assert len(loaded.get_branch("chat").messages) % 2 == 0  # (a KeyError before)
    finally:
        stop.set()
        thread.join(30)
