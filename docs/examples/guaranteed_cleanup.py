"""The context-manager form: the stream closes when the block ends, and the Response is at hand.

python docs/examples/guaranteed_cleanup.py
"""

import asyncio

from lionflow import Timeout
from lionflow.testing import ScriptedModel


async def main() -> None:
    model = ScriptedModel(
        responses=["Streams close when the block ends, even if you stop reading early."],
        chunk_size=6,
        delay=0.02,
        timeout=Timeout(connect=10, first_chunk=30, idle=15, total=120),
        max_concurrent=4,
    )
    async with model.stream(messages=[{"role": "user", "content": "Tell me about cleanup"}]) as call:
        async for chunk in call:
            print(chunk, end="", flush=True)
            if "early" in chunk.data:
                break  # leaving early: the provider stream is closed at the end of the block
    response = call.response
    assert response is not None
    print(f"\n\nincomplete={response.incomplete} finish_reason={response.finish_reason}")
    print(f"{response.chunk_count} chunks in {response.duration:.2f}s")


asyncio.run(main())
