"""The StreamingHandler example of NeMo Guardrails' streaming guide, run on lionflow with only its
imports changed (and `config`, which the guide leaves to the reader, a guarded scripted model):
a task prints the chunks as they come while the call is awaited for the whole reply.

    python docs/examples/streaming_handler.py
"""

import asyncio

from lionflow.guards import OutputGuard, StreamingHandler, blocklist
from lionflow.guards import Rails as LLMRails
from lionflow.testing import ScriptedModel

config = ScriptedModel(
    name="assistant", responses=["The capital of France is Paris."] * 2, chunk_size=6, delay=0.01
)


async def main() -> None:
    app = LLMRails(config, guards=[OutputGuard(blocklist(["password"]), window=16, overlap=8)])

    history = [{"role": "user", "content": "What is the capital of France?"}]

    async for chunk in app.stream_async(messages=history):
        print(f"CHUNK: {chunk}")
        # Or do something else with the token

    streaming_handler = StreamingHandler()

    async def process_tokens():  # type: ignore[no-untyped-def]  # (the guide's code as written)
        async for chunk in streaming_handler:
            print(f"CHUNK: {chunk}")
            # Or do something else with the token

    asyncio.create_task(process_tokens())  # type: ignore[no-untyped-call]  # noqa: RUF006

    result = await app.generate_async(messages=history, streaming_handler=streaming_handler)
    print(result)


if __name__ == "__main__":
    asyncio.run(main())
