"""A parallel multi-model comparison: one question to several models at once, the answers streamed
side by side as they arrive, then a judge that reads them all.

    python docs/examples/model_comparison.py

Swap the ScriptedModels for real ones (``iModel(provider="openai", model="gpt-4o-mini")``,
``iModel(provider="anthropic", model="claude-sonnet-4-6")``, ...): nothing else changes.
"""

import asyncio

from lionflow import Chunk, Session
from lionflow.operations import Builder, FlowEvent, flow_stream
from lionflow.testing import ScriptedModel


async def main() -> None:
    session = Session()
    for name, answer, delay in [
        ("fast-model", "Streaming shows progress at once and lets a reader stop early.", 0.004),
        ("careful-model", "Streaming lowers perceived latency; the total time is the same.", 0.009),
    ]:
        session.services.register(ScriptedModel(responses=[answer], chunk_size=4, delay=delay), name=name)
    session.services.register(
        ScriptedModel(
            responses=lambda _: "Both agree that streaming is about latency.", chunk_size=4, delay=0.005
        ),
        name="judge",
    )

    builder = Builder(session=session)
    question = "Why stream LLM output?"
    answers = [
        builder.communicate(question, imodel=name, branch=name) for name in ("fast-model", "careful-model")
    ]
    builder.communicate(
        "Compare the two answers in one sentence.", imodel="judge", branch="judge", context_from=answers
    )

    names = {op.id: op.name for op in builder.operations}  # looked up per chunk: a dict, not a scan
    texts: dict[str, str] = {}
    current = None
    async with flow_stream(builder, max_concurrent=4) as stream:
        async for operation_id, item in stream:
            name = names[operation_id]
            if isinstance(item, Chunk) and item.type == "text":
                if name != current:  # another operation's turn: tag it, as the chunks interleave
                    print(f"\n[{name}] ", end="")
                    current = name
                texts[name] = texts.get(name, "") + item.data
                print(item.data, end="", flush=True)
            elif isinstance(item, FlowEvent) and item.kind == "completed":
                print(f"\n[{name}] done in {item.result.duration:.2f}s", end="")
                current = None

    print("\n")
    for name, text in texts.items():
        print(f"{name:>14} -> {text}")


asyncio.run(main())
