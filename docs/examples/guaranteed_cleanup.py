"""The context-manager form: the stream closes when the block ends, and the Response is at hand.
Then a stop button: another task stops a call while this one is reading it.

python docs/examples/guaranteed_cleanup.py
"""

import asyncio

import anyio

from lionflow import ModelCall, Timeout
from lionflow.testing import ScriptedModel


async def stop_after(call: ModelCall, seconds: float) -> None:
    await anyio.sleep(seconds)  # in an application: until the user clicks "stop"
    await call.aclose()  # from another task: the reading loop below ends quietly


async def main() -> None:
    model = ScriptedModel(
        responses=[
            "Streams close when the block ends, even if you stop reading early.",
            "This answer is long and slow, and somebody will press stop before it is over.",
        ],
        chunk_size=6,
        delay=0.02,
        timeout=Timeout(connect=10, first_chunk=30, idle=15, total=120),
        max_concurrent=1,  # one call at a time: a call left open would block the next one
    )
    async with model.stream(messages=[{"role": "user", "content": "Tell me about cleanup"}]) as call:
        async for chunk in call:
            print(chunk, end="", flush=True)
            if "early" in chunk.data:
                break  # leaving early: the provider stream and the slot are freed when the block ends
    response = call.response
    assert response is not None
    print(f"\n\nincomplete={response.incomplete} finish_reason={response.finish_reason}")
    print(f"{response.chunk_count} chunks in {response.duration:.2f}s\n")

    messages = [{"role": "user", "content": "Go on"}]
    async with model.stream(messages=messages) as call, anyio.create_task_group() as group:
        group.start_soon(stop_after, call, 0.2)
        async for chunk in call:
            print(chunk, end="", flush=True)
    response = call.response
    assert response is not None
    print(f"\n\nstopped: incomplete={response.incomplete} finish_reason={response.finish_reason}")


asyncio.run(main())
