"""flow_stream on 64 parallel operations x 2,000 chunks, against bare fan-ins of plain tuples.

    .venv/bin/python benchmarks/flow_stream.py [--operations 64] [--chunks 2000]

The best of a few rounds, each from the first request to the last item consumed:

- flow_stream: 64 `communicate` operations on ScriptedModel (no delay, one character per chunk,
  no usage chunk), every chunk through the whole stack (model call, Response assembly, turn
  recording, the fan-in, the consumer);
- a bare anyio memory-object-stream fan-in of the same number of ``(id, n)`` tuples from 64
  producers, each with its own send clone;
- a bare asyncio.Queue fan-in of those tuples.

Then the anyio fan-in and flow_stream again under trio (anyio's other backend, where flow_stream
runs the same code; there is no asyncio.Queue there). Target: flow_stream at most 5x the
asyncio.Queue fan-in per chunk, on either backend. Then peak memory (tracemalloc)
of flow_stream at N and 2N operations: the fan-in holds at most `buffer` chunks whatever N is, so
what grows with N is only each operation's own state (its turn, its Response text).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import anyio

from lionflow import Session
from lionflow.operations import Builder, flow_stream
from lionflow.testing import ScriptedModel


async def run_flow(operations: int, chunks: int) -> int:
    session = Session()
    session.services.register(ScriptedModel(responses=lambda _: "x" * chunks, chunk_size=1, usage=False))
    builder = Builder(session=session)
    for index in range(operations):
        builder.communicate(f"go {index}", imodel="scripted")
    count = 0
    async for _ in flow_stream(builder):
        count += 1
    return count


async def run_anyio(operations: int, chunks: int) -> int:
    send, receive = anyio.create_memory_object_stream[tuple[int, int]](256)

    async def produce(index: int, out: anyio.abc.ObjectSendStream[tuple[int, int]]) -> None:
        async with out:
            for n in range(chunks):
                await out.send((index, n))

    count = 0
    async with anyio.create_task_group() as group:
        async with send:
            for index in range(operations):
                group.start_soon(produce, index, send.clone())
        async with receive:
            async for _ in receive:
                count += 1
    return count


async def run_queue(operations: int, chunks: int) -> int:
    queue: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue(maxsize=256)

    async def produce(index: int) -> None:
        for n in range(chunks):
            await queue.put((index, n))
        await queue.put(None)

    tasks = [asyncio.create_task(produce(index)) for index in range(operations)]
    count, ended = 0, 0
    while ended < operations:
        item = await queue.get()
        if item is None:
            ended += 1
        else:
            count += 1
    await asyncio.gather(*tasks)
    return count


ROUNDS = 5  # the best of a few rounds: one run of the bare fan-in varies by 2x on a busy machine


async def timed(run: Callable[[int, int], Awaitable[int]], operations: int, chunks: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(ROUNDS):
        started = time.perf_counter()
        count = await run(operations, chunks)
        best = min(best, time.perf_counter() - started)
    return best, count


async def peak_memory(operations: int, chunks: int) -> float:
    tracemalloc.start()
    await run_flow(operations, chunks)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


Rows = list[tuple[str, Callable[[int, int], Awaitable[int]]]]


async def measure(rows: Rows, operations: int, chunks: int, per_chunk: dict[str, float]) -> None:
    total = operations * chunks
    for label, run in rows:
        seconds, count = await timed(run, operations, chunks)
        per_chunk[label] = seconds / total * 1e6
        print(f"{label:<34}{seconds:>8.3f} s{per_chunk[label]:>8.2f} us/chunk   ({count:,} items)")


async def main(operations: int, chunks: int) -> None:
    total = operations * chunks
    print(f"{operations} operations x {chunks:,} chunks = {total:,} chunks, best of {ROUNDS} rounds\n")
    rows: Rows = [
        ("asyncio.Queue fan-in", run_queue),
        ("anyio memory-stream fan-in", run_anyio),
        ("flow_stream", run_flow),
    ]
    per_chunk: dict[str, float] = {}
    await measure(rows, operations, chunks, per_chunk)
    trio_rows: Rows = [("anyio memory-stream fan-in (trio)", run_anyio), ("flow_stream (trio)", run_flow)]
    await anyio.to_thread.run_sync(
        lambda: anyio.run(measure, trio_rows, operations, chunks, per_chunk, backend="trio")
    )
    queue = per_chunk["asyncio.Queue fan-in"]
    print(f"\nflow_stream / asyncio.Queue fan-in: {per_chunk['flow_stream'] / queue:.1f}x per chunk")
    print(f"flow_stream on trio / asyncio.Queue fan-in: {per_chunk['flow_stream (trio)'] / queue:.1f}x")
    print("(target: at most 5x)")
    small, large = await peak_memory(operations, chunks), await peak_memory(operations * 2, chunks)
    print(f"peak memory: {small:.1f} MiB at {operations} operations, {large:.1f} MiB at {operations * 2}")
    print(
        f"  per operation: {small / operations * 1024:.0f} KiB vs {large / (operations * 2) * 1024:.0f} KiB"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--operations", type=int, default=64)
    parser.add_argument("--chunks", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.operations, args.chunks))
