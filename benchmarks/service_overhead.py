"""Per-chunk cost of the service layer: chunks/s through iModel.invoke vs. the bare adapter stream.

    .venv/bin/python benchmarks/service_overhead.py [--chunks 100000] [--rounds 5] [--backend both]

Two adapters, each read bare and through `iModel.invoke` (with and without timeouts):

- ready: ScriptedProvider with no delay; every chunk is there when asked for, so no read ever
  suspends. This is the floor: what `ModelCall` adds per chunk (Response assembly, bookkeeping).
- suspending: the same chunks, but each read first suspends once (``anyio.lowlevel.checkpoint()``),
  as a read from a socket that has no data yet does. This is the case of a real stream, and the one
  where a timeout that is armed per suspension shows its cost.

The difference to the bare row of the same adapter is what the service layer adds per chunk. Times
are the process's CPU time (nothing here waits on I/O), which other processes on a shared machine
disturb far less than wall time; rounds are interleaved (bare, invoke, invoke + timeouts, bare, ...)
and the best of each row is kept, so that what disturbance remains slows all rows alike.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.lowlevel

from lionflow import Timeout
from lionflow.services.chunk import Chunk
from lionflow.services.providers.scripted import ScriptedProvider
from lionflow.testing import ScriptedModel


class _SuspendingProvider(ScriptedProvider):
    """ScriptedProvider whose every read suspends once before its chunk, like a socket read."""

    async def _emit(self, chunks: Iterator[Chunk]) -> AsyncIterator[Chunk]:
        checkpoint = anyio.lowlevel.checkpoint
        for chunk in chunks:
            await checkpoint()
            yield chunk


async def _bare(model: ScriptedModel) -> float:
    request = model.request("go")
    started = time.process_time()
    stream = await model.adapter.open(request)
    async for _ in stream:
        pass
    await stream.aclose()
    return time.process_time() - started


async def _through_service(model: ScriptedModel) -> float:
    started = time.process_time()
    async for _ in model.invoke("go"):
        pass
    return time.process_time() - started


async def main(chunks: int, rounds: int) -> None:
    text = "x" * chunks

    def make(suspending: bool, timeout: Timeout | None = None) -> ScriptedModel:
        model = ScriptedModel(responses=lambda _: text, chunk_size=1, usage=False, timeout=timeout)
        if suspending:
            model.adapter = _SuspendingProvider(model.adapter.settings)
        return model

    timeouts = Timeout(idle=30, total=600)
    for case, suspending in (("ready", False), ("suspending", True)):
        best = {"bare": float("inf"), "plain": float("inf"), "timed": float("inf")}
        for _ in range(rounds):
            best["bare"] = min(best["bare"], await _bare(make(suspending)))
            best["plain"] = min(best["plain"], await _through_service(make(suspending)))
            best["timed"] = min(best["timed"], await _through_service(make(suspending, timeouts)))
        bare = best["bare"]
        print(f"  {case}: every read {'suspends once' if suspending else 'is ready'}")
        for label, key in [
            ("bare adapter stream", "bare"),
            ("iModel.invoke", "plain"),
            ("iModel.invoke + timeouts", "timed"),
        ]:
            seconds = best[key]
            extra = (seconds - bare) / chunks * 1e6
            print(
                f"    {label:<26}{chunks / seconds:>12,.0f} chunks/s {seconds / chunks * 1e6:>7.2f} us/chunk"
                f"   +{extra:.2f} us/chunk over bare"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    args = parser.parse_args()
    for backend in ["asyncio", "trio"] if args.backend == "both" else [args.backend]:
        print(f"{backend}: {args.chunks:,} chunks per call, best of {args.rounds}")
        anyio.run(main, args.chunks, args.rounds, backend=backend)
