"""Partial pydantic objects from streamed JSON: lionflow against re-parsing the buffer every delta.

    .venv/bin/python benchmarks/structured.py [--size 100000] [--seed 1] [--rounds 3]
                                              [--reparse-every 8] [--shapes items,text,nested,string,prose]

The four document shapes of issue 19 and a fifth, of --size characters, each streamed in deltas of 1
to 4 characters:

- items: many small items (ids, short names, tags, scores, flags);
- text: items with long text fields (two 20-word strings among an id, a title, tags, a score, a flag);
- nested: objects nested 6 deep (a recursive model), a small tree after another;
- string: one huge string field. Each object shows a new `str` of the whole field (strings cannot
  grow in place): re-parse copies the field once per delta, quadratic in the field's length, while
  lionflow, past 256 characters, shows the growing string again once it has grown by 1/16 (or
  after 1/60 s), so its copying stays linear (`PartialObjects`); the "objects" column counts them;
- prose: items that are nothing but 20-word strings, so that nearly every delta grows one (a stress
  case beyond issue 19's four: two new model instances per delta are most of lionflow's cost here).

Measured in the same run, each producing a partial object after every delta that changes it (but
lionflow's coalescing of a long string, above):

- lionflow: `stream_partial(deltas, Model)` (incremental parse, incremental partial objects), fed by
  an async generator; "sync" is `PartialObjects(Model).feed(delta)` in a plain loop, as re-parse runs;
- re-parse: ``jiter.from_json(buffer, partial_mode="trailing-strings")`` then ``Model.model_validate``
  on the whole buffer after a delta (the usual way; quadratic). Re-parsing every delta of a 100 KB
  document takes minutes per shape, so by default it runs after every 8th delta (the buffer still grows
  by every delta) and its cost per delta is the mean over those: a uniform sample of the positions,
  the same mean as running it after each one (``--reparse-every 1`` does that).

Then lionflow alone on each document ten times larger. Targets: lionflow at least 30x faster than
re-parse at 100 KB, and 1 MB costing at most 11x what 100 KB costs (linear would be 10x). Each timing
is the best of --rounds runs, in CPU seconds of this process (the machine is shared); the 100 KB and
1 MB runs alternate, so that both see the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jiter
from pydantic import BaseModel

from lionflow.structured import PartialObjects, stream_partial

WORDS = ["lion", "flow", "stream", "chunk", "token", "delta", "partial", "object", "model", "field"]


# -- (a) many small items ------------------------------------------------------------------------


class Item(BaseModel):
    id: int = 0
    name: str = ""
    tags: list[str] = []
    score: float = 0.0
    active: bool = False


class Listing(BaseModel):
    items: list[Item] = []


def _item(index: int, rng: random.Random) -> dict[str, Any]:
    return {
        "id": index,
        "name": " ".join(rng.choice(WORDS[:5]) for _ in range(3)),
        "tags": [rng.choice(["a", "bb", "ccc"]) for _ in range(rng.randint(0, 3))],
        "score": round(rng.random() * 100, 3),
        "active": rng.random() < 0.5,
    }


# -- (b) items with long text fields ---------------------------------------------------------------


class Entry(BaseModel):
    id: int = 0
    title: str = ""
    text: str = ""
    notes: str | None = None
    tags: list[str] = []
    score: float = 0.0
    active: bool = False


class Feed(BaseModel):
    entries: list[Entry] = []


def _sentence(rng: random.Random, words: int = 20) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _entry(index: int, rng: random.Random) -> dict[str, Any]:
    return {
        "id": index,
        "title": _sentence(rng, 3),
        "text": _sentence(rng, 20),
        "notes": _sentence(rng, 20),
        "tags": [rng.choice(["a", "bb", "ccc"]) for _ in range(rng.randint(0, 3))],
        "score": round(rng.random() * 100, 3),
        "active": rng.random() < 0.5,
    }


# -- (b') nothing but long text: every field a 20-word string (the hardest case for a partial builder)


class Note(BaseModel):
    title: str = ""
    body: str = ""
    summary: str | None = None
    rating: int = 0


class Notebook(BaseModel):
    notes: list[Note] = []


def _note(index: int, rng: random.Random) -> dict[str, Any]:
    return {
        "title": _sentence(rng, 20),
        "body": _sentence(rng, 20),
        "summary": _sentence(rng, 20),
        "rating": index % 5,
    }


# -- (c) deeply nested objects -----------------------------------------------------------------------


class Node(BaseModel):
    name: str = ""
    value: int = 0
    children: list[Node] = []


class Forest(BaseModel):
    trees: list[Node] = []


def _tree(depth: int, rng: random.Random) -> dict[str, Any]:
    node: dict[str, Any] = {"name": _sentence(rng, 2), "value": rng.randint(0, 999)}
    if depth > 1:
        node["children"] = [_tree(depth - 1, rng) for _ in range(2)]
    return node


# -- (d) one huge string field -----------------------------------------------------------------------


class Essay(BaseModel):
    title: str = ""
    text: str = ""


SHAPES: dict[str, tuple[type[BaseModel], str, Callable[[int, random.Random], dict[str, Any]]]] = {
    "items": (Listing, "items", _item),
    "text": (Feed, "entries", _entry),
    "prose": (Notebook, "notes", _note),
    "nested": (Forest, "trees", lambda _, rng: _tree(6, rng)),
}


def document(shape: str, size: int, rng: random.Random) -> str:
    if shape == "string":
        words: list[str] = []
        length = 0
        while length < size:
            words.append(rng.choice(WORDS))
            length += len(words[-1]) + 1
        return json.dumps({"title": "an essay", "text": " ".join(words)})
    _, key, make = SHAPES[shape]
    elements: list[dict[str, Any]] = []
    length = 0
    while length < size:
        elements.append(make(len(elements), rng))
        length += len(json.dumps(elements[-1])) + 2
    return json.dumps({key: elements})


def model_of(shape: str) -> type[BaseModel]:
    return Essay if shape == "string" else SHAPES[shape][0]


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


async def lionflow(pieces: list[str], model: type[BaseModel]) -> tuple[float, int, BaseModel]:
    started = time.process_time()
    count, last = 0, None
    async for partial in stream_partial(_source(pieces), model):
        count += 1
        last = partial
    assert last is not None
    return time.process_time() - started, count, last


def lionflow_sync(pieces: list[str], model: type[BaseModel]) -> float:
    started = time.process_time()
    objects = PartialObjects(model)
    for piece in pieces:
        objects.feed(piece)
    objects.close()
    return time.process_time() - started


async def _floors(pieces: list[str], rounds: int) -> tuple[float, float, float]:
    """Seconds per delta of reading the deltas from an async source and nothing else; of relaying
    them through an async generator of one's own that yields nothing but the last (what any stream
    of partial objects is, before it does any work); and of making a new str of the text so far
    after each delta (kept until the next, as a partial object would)."""

    async def read() -> float:
        started = time.process_time()
        async for _ in _source(pieces):
            pass
        return time.process_time() - started

    async def relayed(source: AsyncIterator[str]) -> AsyncIterator[str]:
        last = ""
        async for piece in source:
            if not piece:
                yield piece
            last = piece
        yield last

    async def relay() -> float:
        started = time.process_time()
        async for _ in relayed(_source(pieces)):
            pass
        return time.process_time() - started

    async def copy() -> float:
        started = time.process_time()
        text, shown = "", ""
        async for piece in _source(pieces):
            shown = text = text + piece
        del shown
        return time.process_time() - started

    source = min([await read() for _ in range(rounds)])
    relaying = min([await relay() for _ in range(rounds)])
    copied = min([await copy() for _ in range(rounds)])
    return source / len(pieces), relaying / len(pieces), copied / len(pieces)


def reparse(pieces: list[str], model: type[BaseModel], every: int) -> tuple[float, BaseModel]:
    """Seconds per delta of re-parsing, sampled after every `every`-th delta, and the last object."""
    buffer, spent, samples, last = "", 0.0, 0, None
    started = time.process_time()
    for piece in pieces:
        buffer += piece
    growing = time.process_time() - started  # the buffer's growth, paid on every delta
    buffer = ""
    for index, piece in enumerate(pieces):
        buffer += piece
        if index % every and index != len(pieces) - 1:
            continue
        started = time.process_time()
        try:
            value = jiter.from_json(buffer.encode(), partial_mode="trailing-strings")
        except ValueError:
            spent += time.process_time() - started
            samples += 1
            continue
        last = model.model_validate(value)
        spent += time.process_time() - started
        samples += 1
    assert last is not None
    return growing / len(pieces) + spent / samples, last


async def main(size: int, seed: int, rounds: int, every: int, shapes: list[str]) -> None:
    print(f"deltas of 1-4 characters; best of {rounds} rounds; re-parse sampled every {every} deltas\n")
    header = (
        f"{'shape':<8}{'size':>10}{'deltas':>9}{'objects':>9}{'lionflow us/delta':>19}{'sync':>7}"
        f"{'re-parse us/delta':>19}{'ratio':>7}{'sync':>6}{'1 MB us/delta':>15}{'1 MB/100 KB':>13}"
    )
    print(header)
    print("-" * len(header))
    floors: dict[str, tuple[float, tuple[float, float, float]]] = {}
    for shape in shapes:
        rng = random.Random(seed)
        model = model_of(shape)
        small = document(shape, size, rng)
        small_pieces = deltas(small, rng)
        large = document(shape, size * 10, rng)
        large_pieces = deltas(large, rng)
        expected = model.model_validate_json(small)

        ours, big, sync = math.inf, math.inf, math.inf
        for _ in range(rounds):  # alternating, so that a busy spell of the machine hits both sizes
            seconds, count, ours_last = await lionflow(small_pieces, model)
            ours = min(ours, seconds)
            seconds, _, big_last = await lionflow(large_pieces, model)
            big = min(big, seconds)
            sync = min(sync, lionflow_sync(small_pieces, model))
        assert ours_last == expected, shape
        assert big_last == model.model_validate_json(large), shape
        theirs, theirs_last = min(
            (reparse(small_pieces, model, every) for _ in range(max(1, rounds - 1))), key=lambda r: r[0]
        )
        assert theirs_last == expected, shape

        per_delta = ours / len(small_pieces) * 1e6
        per_delta_sync = sync / len(small_pieces) * 1e6
        print(
            f"{shape:<8}{len(small):>10,}{len(small_pieces):>9,}{count:>9,}{per_delta:>19.2f}"
            f"{per_delta_sync:>7.2f}{theirs * 1e6:>19.2f}{theirs * 1e6 / per_delta:>6.0f}x"
            f"{theirs * 1e6 / per_delta_sync:>5.0f}x"
            f"{big / len(large_pieces) * 1e6:>15.2f}{big / ours:>12.1f}x",
            flush=True,
        )
        if shape == "string":
            floors[shape] = (theirs, await _floors(small_pieces, rounds))
    print("\ntargets: ratio at least 30x; 1 MB/100 KB (total time) at most 11x")
    for shape, (theirs, (source, relaying, copy)) in floors.items():
        print(
            f"\n{shape}: re-parse costs {theirs * 1e6:.2f} us/delta. Reading the deltas from their async"
            f" source and doing nothing costs {source * 1e6:.2f} us/delta (re-parse/that:"
            f" {theirs / source:.0f}x); relaying them through an async generator that does nothing"
            f" else costs {relaying * 1e6:.2f} us/delta ({theirs / relaying:.0f}x); a new str of the"
            f" field after every delta (what an object per delta must hold) costs"
            f" {copy * 1e6:.2f} us/delta ({theirs / copy:.0f}x)."
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reparse-every", type=int, default=8)
    parser.add_argument("--shapes", default="items,text,nested,string,prose")
    args = parser.parse_args()
    asyncio.run(main(args.size, args.seed, args.rounds, args.reparse_every, args.shapes.split(",")))
