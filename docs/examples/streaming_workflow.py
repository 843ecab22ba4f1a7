"""Seed example 5, "Streaming Workflow Results", as written, on the scripted provider.

Only the imports and ``provider="scripted"`` differ from the seed. The research operation streams
first; the article starts once it has finished, with the research result as its context.

    python docs/examples/streaming_workflow.py
"""

import asyncio

from lionflow import Session, iModel
from lionflow.operations import Builder, flow_stream


async def streaming_workflow() -> None:
    """Stream results from multi-step workflow"""
    session = Session()
    model = iModel(provider="scripted", model="gpt-4o-mini", temperature=0.7, stream=True)
    session.services.register(model)

    builder = Builder(session=session)

    # Build workflow
    research = builder.communicate(
        instruction="List 3 key benefits of exercise",
        imodel=model.name,
        branch="research",
    )

    article = builder.communicate(  # noqa: F841 - as in the seed
        instruction="Write a short article using these benefits",
        imodel=model.name,
        branch="article",
        context_from=[research],
    )

    # Stream workflow execution
    print("Executing workflow...\n")

    async for operation_id, chunk in flow_stream(builder.operations):
        # Get operation details
        operation = next((op for op in builder.operations if op.id == operation_id), None)

        if operation:
            branch_name = operation.parameters.get("branch", "unknown")
            print(f"[{branch_name}] {chunk}", end="", flush=True)

    print("\n\nWorkflow complete!")


asyncio.run(streaming_workflow())
