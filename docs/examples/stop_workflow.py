"""A stop button for a running workflow: `aclose()` from another task.

Three slow operations stream side by side; a second task plays the user who presses "stop" after
half a second. The loop ends at once, every turn is recorded as incomplete with what had arrived,
and `stream.results.cancelled` names what was interrupted.

    python docs/examples/stop_workflow.py
"""

import asyncio

import anyio

from lionflow import AssistantResponseContent, Chunk, Session
from lionflow.operations import Builder, flow_stream
from lionflow.testing import ScriptedModel


async def main() -> None:
    session = Session()
    session.services.register(
        ScriptedModel(responses=lambda _: "word " * 200, chunk_size=5, delay=0.02), name="slow"
    )
    builder = Builder(session=session)
    for topic in ("rivers", "mountains", "deserts"):
        builder.communicate(f"Write at length about {topic}", imodel="slow", branch=topic)

    pressed = anyio.Event()
    chunks = 0
    async with flow_stream(builder) as stream, anyio.create_task_group() as group:

        async def stop_button() -> None:
            await pressed.wait()
            await stream.aclose()  # from another task: the loop below ends promptly

        async def user() -> None:
            await anyio.sleep(0.5)
            pressed.set()

        group.start_soon(stop_button)
        group.start_soon(user)
        async for _operation_id, item in stream:
            chunks += isinstance(item, Chunk)
        group.cancel_scope.cancel()  # the flow ended first: nobody needs to press stop

    print(f"stopped after {chunks} chunks; cancelled: {len(stream.results.cancelled)} operations")
    for topic in ("rivers", "mountains", "deserts"):
        answer = session.get_branch(topic).messages[-1].content
        assert isinstance(answer, AssistantResponseContent)
        print(f"{topic:>10}: incomplete={answer.incomplete}, {len(answer.assistant_response)} chars kept")


asyncio.run(main())
