"""Per-chunk cost of the service layer: chunks/s through iModel.invoke vs. the bare adapter stream.

    .venv/bin/python benchmarks/service_overhead.py [--chunks 200000]

Both sides read the same pre-built chunks from ScriptedProvider with no delay; the difference is
what `ModelCall` adds per chunk (timeouts, Response assembly, bookkeeping).
"""

from __future__ import annotations

import argparse
import time

import anyio

from lionflow import Timeout
from lionflow.testing import ScriptedModel


async def _bare(model: ScriptedModel) -> float:
    request = model.request("go")
    started = time.perf_counter()
    stream = await model.adapter.open(request)
    async for _ in stream:
        pass
    await stream.aclose()
    return time.perf_counter() - started


async def _through_service(model: ScriptedModel) -> float:
    started = time.perf_counter()
    async for _ in model.invoke("go"):
        pass
    return time.perf_counter() - started


async def main(chunks: int, rounds: int) -> None:
    text = "x" * chunks

    def make(**kwargs: object) -> ScriptedModel:
        return ScriptedModel(responses=lambda _: text, chunk_size=1, usage=False, **kwargs)  # type: ignore[arg-type]

    bare = min([await _bare(make()) for _ in range(rounds)])
    plain = min([await _through_service(make()) for _ in range(rounds)])
    timed = min([await _through_service(make(timeout=Timeout(idle=30, total=600))) for _ in range(rounds)])
    print(f"chunks per call: {chunks:,} (best of {rounds})")
    for label, seconds in [
        ("bare adapter stream", bare),
        ("iModel.invoke", plain),
        ("iModel.invoke + timeouts", timed),
    ]:
        extra = (seconds - bare) / chunks * 1e6
        print(f"{label:<26}{chunks / seconds:>12,.0f} chunks/s   +{extra:.2f} us/chunk over bare")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.chunks, args.rounds)
