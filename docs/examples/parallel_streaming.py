"""Seed example 4, "Streaming Multiple Responses in Parallel", as written, on the scripted provider.

Only the imports and the providers differ from the seed (``provider="scripted"`` with a small
``delay`` so that the two streams visibly overlap). flow_stream (docs/workflows.md) does the same
with one interleaved stream, tagged by operation.

    python docs/examples/parallel_streaming.py
"""

import asyncio

from lionflow import InstructionContent, Message, Session, iModel


async def stream_one_model(model: iModel, instruction: str, label: str) -> str:
    """Stream from one model"""
    message = Message(content=InstructionContent(instruction=instruction))

    print(f"\n[{label}] Starting...")
    response = []

    async for chunk in model.invoke(messages=[message.chat_msg]):
        if hasattr(chunk, "data"):
            response.append(chunk.data)
            # Show first few chunks
            if len(response) <= 5:
                print(f"[{label}] {chunk.data}", end="", flush=True)

    print(f"\n[{label}] Complete ({len(response)} chunks)")
    return "".join(response)


async def parallel_streaming() -> tuple[str, str]:
    """Stream from multiple models simultaneously"""
    session = Session()

    gpt = iModel(
        provider="scripted", model="gpt-4o-mini", temperature=0.7, stream=True, name="gpt", delay=0.002
    )

    claude = iModel(
        provider="scripted",
        endpoint="messages",
        model="claude-3-5-haiku-20241022",
        temperature=0.7,
        stream=True,
        name="claude",
        delay=0.002,
    )

    session.services.register(gpt)
    session.services.register(claude)

    question = "What is the future of AI?"

    # Stream from both models in parallel
    results = await asyncio.gather(
        stream_one_model(gpt, question, "GPT"),
        stream_one_model(claude, question, "Claude"),
    )

    print("\n" + "=" * 60)
    print("FINAL RESPONSES")
    print("=" * 60)

    print(f"\nGPT Response ({len(results[0])} chars):")
    print(results[0][:200] + "...")

    print(f"\nClaude Response ({len(results[1])} chars):")
    print(results[1][:200] + "...")

    return results


asyncio.run(parallel_streaming())
