"""Pipelining: a two-stage flow with `for_each` against the same flow waiting for the whole upstream.

    .venv/bin/python benchmarks/pipelined_flow.py [--sizes 5 20 100] [--gap 0.1] [--per-item 0.1]

The upstream is a model writing N ideas as a ``list[Idea]`` reply, one element closing every `gap`
seconds; the downstream spends `per_item` seconds per idea. Both are scripted models with those
delays, so the figures show what the flow adds and what pipelining saves, not a network's noise.

- ``for_each``: a post per idea, each started the moment its idea has closed in the stream;
- ``context_from``: one downstream turn given the whole list, writing the N posts in one reply
  (``per_item`` each), which is how the flow runs without item streams;
- ``wait, then fan out``: the posts in parallel as with `for_each`, but only once the list is
  complete (a step that starts them from the finished list), to separate what pipelining saves
  from what parallel children save.

The ideal `for_each` time is the upstream's own (N x gap) plus one post. Then the throughput of
the typed-stream reader (`benchmarks/stream_reader.py`), lionflow against truss-chains'.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import anyio
from pydantic import BaseModel

from lionflow import Session
from lionflow.operations import Builder, FlowEvent, flow, flow_stream
from lionflow.testing import ScriptedModel


class Idea(BaseModel):
    title: str


def upstream(size: int, gap: float) -> ScriptedModel:
    """N ideas, one element closing every `gap` seconds: each element is one chunk (padded with
    spaces, which JSON allows between values, to one chunk size), each chunk `gap` after the last."""
    elements = [json.dumps({"title": f"idea {i}"}) for i in range(size)]
    pieces = ['{"items": [' + elements[0], *(", " + element for element in elements[1:]), "]}"]
    width = max(map(len, pieces))
    return ScriptedModel(
        name="ideas",
        responses=["".join(piece.ljust(width) for piece in pieces)],
        chunk_size=width,
        delay=lambda i: gap if i < size else 0.0,
        usage=False,
    )


def writer(per_item: float, *, items_per_reply: int = 1, name: str = "writer") -> ScriptedModel:
    """A reply of `items_per_reply` posts, `per_item` seconds each (one chunk per post)."""
    post = "A short post. " * 3
    return ScriptedModel(
        name=name,
        responses=lambda messages: post * items_per_reply,
        chunk_size=len(post),
        delay=lambda i: per_item if i < items_per_reply else 0.0,  # (not before the finish chunk)
        usage=False,
    )


async def timed(builder: Builder, is_post: Any) -> tuple[float, float]:
    """Run the flow: seconds to its end, and to the first post's completion."""
    started = time.perf_counter()
    first = math.inf
    async with flow_stream(builder) as stream:
        async for _, item in stream:
            if isinstance(item, FlowEvent) and item.kind in ("completed", "item") and is_post(item):
                first = min(first, time.perf_counter() - started)
    return time.perf_counter() - started, first


async def with_for_each(size: int, gap: float, per_item: float) -> tuple[float, float]:
    session = Session()
    session.services.register(upstream(size, gap))
    session.services.register(writer(per_item))
    builder = Builder(session=session)
    ideas = builder.communicate("List ideas", imodel="ideas", response_format=list[Idea])
    posts = builder.communicate("Write a post about this idea", imodel="writer", for_each=ideas)
    return await timed(builder, lambda event: event.operation.id.startswith(f"{posts.id}["))


async def with_context_from(size: int, gap: float, per_item: float) -> tuple[float, float]:
    session = Session()
    session.services.register(upstream(size, gap))
    session.services.register(writer(per_item, items_per_reply=size))
    builder = Builder(session=session)
    ideas = builder.communicate("List ideas", imodel="ideas", response_format=list[Idea])
    builder.communicate("Write a post about each idea", imodel="writer", context_from=[ideas])
    # its first post is done when its first chunk is: per_item after it starts
    total, started_at = await timed(
        builder, lambda event: event.operation is ideas and event.kind == "completed"
    )
    return total, started_at + per_item


async def wait_then_fan_out(size: int, gap: float, per_item: float) -> tuple[float, float]:
    session = Session()
    session.services.register(upstream(size, gap))
    model = writer(per_item)
    session.services.register(model)
    builder = Builder(session=session)
    ideas = builder.communicate("List ideas", imodel="ideas", response_format=list[Idea])

    first_post = math.inf
    started = time.perf_counter()

    async def posts(inputs: Any) -> list[str]:
        found: list[str] = []

        async def one(idea: Idea) -> None:
            nonlocal first_post
            found.append((await model.invoke(f"Write a post about {idea.title}")).text)
            first_post = min(first_post, time.perf_counter() - started)

        async with anyio.create_task_group() as group:
            for idea in inputs[ideas].parsed:
                group.start_soon(one, idea)
        return found

    builder.add(posts, depends_on=[ideas])
    await flow(builder)
    return time.perf_counter() - started, first_post


async def pipelining(sizes: list[int], gap: float, per_item: float) -> None:
    print(f"upstream: an element every {gap * 1000:.0f} ms; downstream: {per_item * 1000:.0f} ms per item")
    print("seconds to the end of the flow (and to the first finished post)")
    print(
        f"{'N':>5}{'for_each':>17}{'ideal':>8}{'context_from':>19}{'wait + fan-out':>19}"
        f"{'vs context_from':>17}"
    )
    for size in sizes:
        pipelined, pipelined_first = await with_for_each(size, gap, per_item)
        waiting, waiting_first = await with_context_from(size, gap, per_item)
        fanned, fanned_first = await wait_then_fan_out(size, gap, per_item)
        ideal = size * gap + per_item
        print(
            f"{size:>5}{pipelined:>8.2f} ({pipelined_first:>5.2f}){ideal:>8.2f}"
            f"{waiting:>10.2f} ({waiting_first:>5.2f}){fanned:>10.2f} ({fanned_first:>5.2f})"
            f"{waiting / pipelined:>16.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20, 100])
    parser.add_argument("--gap", type=float, default=0.1)
    parser.add_argument("--per-item", type=float, default=0.1)
    parser.add_argument("--no-reader", action="store_true", help="skip the stream reader's throughput")
    args = parser.parse_args()
    anyio.run(pipelining, args.sizes, args.gap, args.per_item)
    if not args.no_reader:
        print()
        import stream_reader  # benchmarks/stream_reader.py, beside this script

        stream_reader.main([])


if __name__ == "__main__":
    main()
