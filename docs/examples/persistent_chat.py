"""A streamed conversation persisted in SQLite, then loaded back in full.

    python docs/examples/persistent_chat.py [chat.db]

communicate records both sides of every turn, streamed or not; with a store, each turn is written
in one transaction on the store's own thread, so the event loop never waits on the disk.
"""

import asyncio
import sys
import tempfile
from pathlib import Path

from lionflow import Session, SQLiteStore
from lionflow.operations import communicate
from lionflow.testing import ScriptedModel


async def main(path: str) -> None:
    model = ScriptedModel(
        responses=lambda messages: f"(reply #{len(messages) // 2})", chunk_size=3, delay=0.01
    )
    async with SQLiteStore(path) as store:
        session = Session(store=store)
        session.services.register(model)
        branch = session.create_branch(name="chat", system="You are concise.")

        for question in ["What is a coroutine?", "And a task?", "Why stream?"]:
            print(f"User: {question}\nAssistant: ", end="", flush=True)
            async for chunk in communicate(session, branch, instruction=question):
                print(chunk, end="", flush=True)
            print()

        loaded = await Session.load(store, session.id)
        print(f"\nloaded session {loaded.id[:8]}: {len(loaded.messages)} messages")
        for message in loaded.get_branch("chat").messages:
            print(f"  {message.role:<9} {message.chat_msg['content']!r}")


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "chat.db")
    asyncio.run(main(target))
