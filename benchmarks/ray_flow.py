"""A wide flow, local executor against `RayExecutor`: total time, chunks per second, cost per chunk.

    .venv/bin/python benchmarks/ray_flow.py [--ops 200] [--chunks 200] [--batch-ms 0 10 50]
                                            [--num-cpus 2] [--task-cpus 1] [--repeat 1]

The flow is `--ops` independent `communicate` operations (each on a branch of its own, so all may
run at once), each answered by a `ScriptedModel` with no delay whose reply is `--chunks` text
chunks of 4 characters: ops x chunks chunks in all, so the figures are what the executor and the
flow add, not a provider's latency. The consumer reads everything with `flow_stream` and counts
the text chunks (checked: every one arrives).

- ``local``: the default executor, every operation in this process;
- ``ray, batch_ms=B``: `RayExecutor(batch_ms=B)` on a local Ray cluster started here (127.0.0.1
  only, `--num-cpus` CPUs, `RayExecutor.start()`), each operation's model call a Ray task asking
  `--task-cpus` CPUs, whose chunks come back in batches of what it produced within B ms (0: every
  chunk its own return). The cluster's start and a warm-up flow (worker processes starting) are
  not measured.

Columns: ``total s``, from opening the stream to its end (best of `--repeat`); ``chunks/s``, text
chunks the consumer received per second of that; ``overhead/chunk``, (Ray's time - local time) /
chunks: what moving the model calls into Ray costs per chunk on this machine, the figure to weigh
against a real model's time per chunk (tens of ms for a hosted LLM); ``overhead/op``, the same
difference per operation (a task's scheduling, start and first return: with no delay a task
produces its whole reply within one batch of 10 ms, so there the cost is per task, not per chunk;
these are wall-clock figures, with `--num-cpus` tasks at once). With 2 CPUs, at most 2
operations run at once on Ray (each task asks 1 CPU), while the local executor runs all of them
interleaved on one event loop.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio

from lionflow import Chunk, Session
from lionflow.operations import Builder, RayExecutor, flow_stream
from lionflow.testing import ScriptedModel

CHUNK = 4  # characters per chunk


def _builder(ops: int, chunks: int) -> Builder:
    text = ("abcdefgh" * (chunks * CHUNK // 8 + 1))[: chunks * CHUNK]

    def reply(messages: list[dict[str, Any]]) -> str:
        return text  # (a function, not a list: it travels to the Ray task and answers every call)

    session = Session()
    session.services.register(ScriptedModel(responses=reply, name="m", chunk_size=CHUNK, usage=False))
    builder = Builder(session=session)
    for index in range(ops):
        builder.communicate(f"Question {index}", imodel="m", name=f"op{index}")
    return builder


async def _run(ops: int, chunks: int, executor: RayExecutor | None) -> float:
    """Seconds to stream the whole flow; checks that every text chunk arrived."""
    builder = _builder(ops, chunks)
    received = 0
    started = time.perf_counter()
    async with flow_stream(builder, executor=executor) as stream:
        async for _, item in stream:
            if isinstance(item, Chunk) and item.type == "text":
                received += 1
    seconds = time.perf_counter() - started
    if received != ops * chunks:
        raise RuntimeError(f"{received} text chunks arrived, not {ops * chunks}")
    return seconds


async def _best(ops: int, chunks: int, executor: RayExecutor | None, repeat: int) -> float:
    return min([await _run(ops, chunks, executor) for _ in range(repeat)])


def main(ops: int, chunks: int, batches: list[float], num_cpus: int, task_cpus: float, repeat: int) -> None:
    total = ops * chunks
    print(f"{ops} operations x {chunks} chunks = {total:,} chunks; Ray: local cluster, {num_cpus} CPUs,")
    print(f"{task_cpus:g} CPU per task; best of {repeat}\n")
    print(f"{'executor':<20}{'total s':>10}{'chunks/s':>12}{'overhead/chunk':>16}{'overhead/op':>14}")
    local = anyio.run(_best, ops, chunks, None, repeat)
    print(f"{'local':<20}{local:>10.2f}{total / local:>12,.0f}{'-':>16}{'-':>14}", flush=True)

    import ray

    # Started here, from the main thread (Ray ties its processes to the thread that starts them).
    options = {"object_store_memory": 200 * 1024 * 1024, "log_to_driver": False}
    RayExecutor(num_cpus=num_cpus, init_options=options).start()
    try:
        anyio.run(_run, num_cpus * 2, 10, RayExecutor(task_cpus=task_cpus))  # warm-up: workers start
        for batch_ms in batches:
            executor = RayExecutor(batch_ms=batch_ms, task_cpus=task_cpus)
            seconds = anyio.run(_best, ops, chunks, executor, repeat)
            per_chunk = (seconds - local) / total * 1e6
            per_op = (seconds - local) / ops * 1e3
            label = f"ray, batch_ms={batch_ms:g}"
            figures = f"{seconds:>10.2f}{total / seconds:>12,.0f}{per_chunk:>13,.0f} us{per_op:>11.1f} ms"
            print(f"{label:<20}{figures}", flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ops", type=int, default=200, help="operations in the flow")
    parser.add_argument("--chunks", type=int, default=200, help="text chunks per operation")
    parser.add_argument(
        "--batch-ms", type=float, nargs="+", default=[0, 10, 50], help="RayExecutor batch_ms values"
    )
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--task-cpus", type=float, default=1, help="CPUs each Ray task asks for")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; the best is shown")
    args = parser.parse_args()
    main(args.ops, args.chunks, args.batch_ms, args.num_cpus, args.task_cpus, args.repeat)
