"""A pipelined flow, offline: one model lists ideas as a JSON list, another writes a post per idea,
and each post starts the moment its idea has closed in the stream, not when the list is done.

Both models are scripted here, with delays like real ones; for real providers, register e.g.
``iModel(provider="openai", model="gpt-4o-mini", name="gpt")`` and
``iModel(provider="anthropic", model="claude-sonnet-4-6", name="claude")`` instead.

    python docs/examples/pipelined_posts.py
"""

import asyncio
import json
import time

from pydantic import BaseModel

from lionflow import Session
from lionflow.operations import Builder, FlowEvent, flow_stream
from lionflow.testing import ScriptedModel


class Idea(BaseModel):
    title: str
    angle: str


IDEAS = [
    Idea(title="Rain gardens", angle="what to plant where water pools"),
    Idea(title="Night pollinators", angle="moths do half the work"),
    Idea(title="No-dig beds", angle="cardboard, compost, patience"),
]


def post_about(messages: list[dict[str, str]]) -> str:
    # The idea arrives as the turn's context (JSON under the upstream operation's name).
    title = messages[-1]["content"].split('"title": "', 1)[1].split('"', 1)[0]
    return f"{title}: a short post, written while the next idea was still being listed."


async def main() -> None:
    session = Session()
    session.services.register(
        ScriptedModel(
            name="gpt",
            responses=[json.dumps({"items": [i.model_dump() for i in IDEAS]})],
            chunk_size=6,
            delay=0.03,
        )
    )
    session.services.register(ScriptedModel(name="claude", responses=post_about, chunk_size=8, delay=0.02))

    builder = Builder(session=session)
    ideas = builder.communicate(
        instruction="List 3 blog ideas", imodel="gpt", response_format=list[Idea], name="ideas"
    )
    posts = builder.communicate(
        instruction="Write a post about this idea", imodel="claude", for_each=ideas, name="posts"
    )

    start = time.perf_counter()
    async with flow_stream(builder) as stream:
        async for _, item in stream:
            if not isinstance(item, FlowEvent):
                continue  # the chunks: a UI would stream them into each post's box
            at = f"{time.perf_counter() - start:5.2f}s"
            name = item.operation.name
            if item.kind == "item" and name == "ideas":
                print(f"{at}  idea     {item.result.title}")
            elif item.kind == "completed" and name.startswith("posts["):
                print(f"{at}  post     {item.result.text}")
            elif item.kind == "completed":
                print(f"{at}  done     {name}")
    results = stream.results
    print(f"\n{len(results[ideas.id].parsed)} ideas, {len(results[posts.id])} posts")


if __name__ == "__main__":
    asyncio.run(main())
