"""Partial pydantic objects from streamed JSON: lionflow against re-parsing the buffer every delta.

    .venv/bin/python benchmarks/structured.py [--size 100000] [--seed 1]

A JSON list of objects of --size characters streams in deltas of 1 to 4 characters. Measured in
the same run, each producing a partial `Listing` after every delta that changes it:

- lionflow: `stream_partial(deltas, Listing)` (incremental parse, incremental partial objects);
- re-parse: ``jiter.from_json(buffer, partial_mode="trailing-strings")`` then
  ``Listing.model_validate`` on the whole buffer, after every delta (the usual way; quadratic).

Then lionflow alone on a document ten times larger. Targets: at least 30x faster than re-parse at
100 KB, and 1 MB costing at most 12x what 100 KB costs (linear would be 10x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import jiter
from pydantic import BaseModel

from lionflow.structured import stream_partial


class Item(BaseModel):
    id: int = 0
    name: str = ""
    tags: list[str] = []
    score: float = 0.0
    active: bool = False


class Listing(BaseModel):
    items: list[Item] = []


def document(size: int, rng: random.Random) -> str:
    items: list[dict[str, Any]] = []
    text = ""
    while len(text) < size:
        items.append(
            {
                "id": len(items),
                "name": " ".join(rng.choice(["lion", "flow", "stream", "chunk", "token"]) for _ in range(3)),
                "tags": [rng.choice(["a", "bb", "ccc"]) for _ in range(rng.randint(0, 3))],
                "score": round(rng.random() * 100, 3),
                "active": rng.random() < 0.5,
            }
        )
        if len(items) % 50 == 0:
            text = json.dumps({"items": items})
    return json.dumps({"items": items})


def deltas(text: str, rng: random.Random) -> list[str]:
    pieces, i = [], 0
    while i < len(text):
        step = rng.randint(1, 4)
        pieces.append(text[i : i + step])
        i += step
    return pieces


async def _source(pieces: list[str]) -> AsyncIterator[str]:
    for piece in pieces:
        yield piece


async def lionflow(pieces: list[str]) -> tuple[float, int, Listing]:
    started = time.perf_counter()
    count, last = 0, None
    async for partial in stream_partial(_source(pieces), Listing):
        count += 1
        last = partial
    assert last is not None
    return time.perf_counter() - started, count, last


def reparse(pieces: list[str]) -> tuple[float, int, Listing]:
    started = time.perf_counter()
    buffer, count, last = "", 0, None
    for piece in pieces:
        buffer += piece
        try:
            value = jiter.from_json(buffer.encode(), partial_mode="trailing-strings")
        except ValueError:
            continue
        last = Listing.model_validate(value)
        count += 1
    assert last is not None
    return time.perf_counter() - started, count, last


async def main(size: int, seed: int) -> None:
    rng = random.Random(seed)
    small = document(size, rng)
    small_pieces = deltas(small, rng)
    large = document(size * 10, rng)
    large_pieces = deltas(large, rng)
    expected = Listing.model_validate_json(small)

    ours, ours_count, ours_last = await lionflow(small_pieces)
    theirs, theirs_count, theirs_last = reparse(small_pieces)
    assert ours_last == expected == theirs_last
    big, _, big_last = await lionflow(large_pieces)
    assert big_last == Listing.model_validate_json(large)

    print(f"{len(small):,} characters in {len(small_pieces):,} deltas of 1-4 characters\n")
    print(f"lionflow partial objects   {ours:>8.3f} s   {ours_count:>7,} objects")
    print(f"re-parse every delta       {theirs:>8.3f} s   {theirs_count:>7,} objects")
    print(f"lionflow is {theirs / ours:.0f}x faster at {len(small) // 1000} KB (target: at least 30x)\n")
    print(f"lionflow at {len(large):,} characters ({len(large_pieces):,} deltas): {big:.3f} s")
    ratio = big / ours
    print(
        f"{len(large) // 1000} KB costs {ratio:.1f}x what {len(small) // 1000} KB costs (target: at most 12x)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(main(args.size, args.seed))
