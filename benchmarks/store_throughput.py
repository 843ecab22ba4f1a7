"""Turn writes, SQLite against PostgreSQL: turns per second and p99 latency, 1 and 8 sessions at once.

    .venv/bin/python benchmarks/store_throughput.py [--turns 800] [--answer-chars 400] [--skip-postgres]
                                                    [--streams 1000] [--events-per-write 2] [--writes 20]

A turn is what a chat turn stores: a user message (about 120 characters) and an assistant answer
(`--answer-chars`, a few hundred), written with `Session.add_turn`, one transaction per turn. The
latency of a turn is from the call (the write is submitted) to its return (the store's future has
resolved: the transaction is committed and durable); each session writes its next turn when the
last one returned, as a chat does. `--turns` turns per run, split over the sessions.

Rows:

- ``sqlite``: `SQLiteStore` on a temporary file, ``synchronous="full"`` (the default: each commit
  survives power loss);
- ``postgres``: `PostgresStore` on a PostgreSQL server started here (initdb + pg_ctl in a temporary
  directory, 127.0.0.1 only, the server's defaults: fsync and synchronous_commit on), stopped at the
  end;
- ``postgres, async commit``: the same with ``synchronous_commit=off`` for the connections (a
  commit returns before its WAL is flushed; a crash of the *database* may lose the last few
  hundred milliseconds of turns, never corrupt them), to show what the WAL flush costs.

``stores``: 1, the sessions share one store, whose one writer thread commits their turns one after
another (one server process); 8, a store per session, each with its own writer (for PostgreSQL, 8
writer connections: what 8 server processes on one database do; for SQLite, 8 connections taking
turns at the file's one write lock).

Then the stream events a server keeps for resuming (`lionflow serve` with a store): its saver
writes, every 50 ms, the new SSE events of all its open streams as one write (`submit_events`), a
row per event. Here `--writes` such writes of `--streams` streams x `--events-per-write` events
(the defaults: 1,000 streams at 40 deltas/s each make 2 events per stream per 50 ms), one after
another: ``rows/s`` is what one store's writer sustains, ``p50 ms`` / ``max ms`` one write's time
(under 50 ms, the saver keeps up).

Read ``turns/s`` as the rate one such process sustains for this turn size, and p99 as what the slowest
1% of turns wait before `add_turn` returns. The PostgreSQL server is on this machine, so a real
deployment adds a network round trip per statement. Needs the ``postgres`` extra and PostgreSQL's
server binaries (``make system``); without them the PostgreSQL rows are skipped with a note.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path

import anyio

from lionflow import AssistantResponseContent, InstructionContent, Message, Session, SQLiteStore
from lionflow.session.stores.base import EventBatch, SessionStore, wait_for

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the PostgreSQL server helper of the tests (tests/session/postgres.py)

from tests.session.postgres import PostgresServer, find_binaries  # noqa: E402

ASYNC_COMMIT = " options='-c synchronous_commit=off'"
Opener = Callable[[int], AbstractAsyncContextManager[SessionStore]]  # a new store (the index-th of a row)
QUESTION = "Could you summarise what changed in the quarterly figures, and which region explains most of it? "


def _answer(chars: int, turn: int) -> str:
    sentence = f"Turn {turn}: revenue rose in the north while costs held flat in the south. "
    return (sentence * (chars // len(sentence) + 1))[:chars]


async def _run(
    stores: Sequence[SessionStore], sessions: int, turns: int, answer_chars: int
) -> tuple[float, list[float]]:
    """`sessions` sessions (spread over `stores`), `turns` turns in all: turns per second, latencies."""
    latencies: list[float] = []

    async def chat(session: Session, count: int) -> None:
        branch = session.create_branch(name="chat")
        for turn in range(count):
            question = Message(content=InstructionContent(instruction=f"{QUESTION}({turn})"))
            answer = Message(content=AssistantResponseContent(assistant_response=_answer(answer_chars, turn)))
            started = time.perf_counter()
            await session.add_turn(branch, question, answer)
            latencies.append(time.perf_counter() - started)

    each = turns // sessions
    runs = [Session(store=stores[index % len(stores)]) for index in range(sessions)]
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for session in runs:
            group.start_soon(chat, session, each)
    return each * sessions / (time.perf_counter() - started), latencies


def _event(stream: int, number: int) -> bytes:
    """An SSE event as `lionflow serve` relays a Chat Completions delta (about 190 bytes)."""
    chunk = (
        f'{{"id":"chatcmpl-{stream:08d}","object":"chat.completion.chunk","created":1764460800,'
        f'"model":"m","choices":[{{"index":0,"delta":{{"content":"tok{number:04d}"}},"finish_reason":null}}]}}'
    )
    return f"id: {number}\ndata: {chunk}\n\n".encode()


async def _events(
    store: SessionStore, streams: int, per_batch: int, writes: int
) -> tuple[float, list[float]]:
    """`writes` event writes as a server's saver makes them (every stream's new events in one
    write), one after another: rows per second, latencies."""
    latencies: list[float] = []
    started = time.perf_counter()
    for write in range(writes):
        first = write * per_batch + 1
        batches = tuple(
            EventBatch(
                f"chatcmpl-{stream:08d}", first, tuple(_event(stream, first + i) for i in range(per_batch))
            )
            for stream in range(streams)
        )
        began = time.perf_counter()
        await wait_for(store.submit_events(batches))
        latencies.append(time.perf_counter() - began)
    return streams * per_batch * writes / (time.perf_counter() - started), latencies


async def _measure_events(name: str, open_store: Opener, streams: int, per_batch: int, writes: int) -> None:
    async with open_store(0) as store:
        await _events(store, 1, 1, 1)  # warm-up
        rate, latencies = await _events(store, streams, per_batch, writes)
    print(
        f"{name:<26}{streams * per_batch:>12,}{rate:>12,.0f}{statistics.median(latencies) * 1000:>10.1f}"
        f"{max(latencies) * 1000:>10.1f}",
        flush=True,
    )


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


async def _measure(name: str, open_store: Opener, turns: int, answer_chars: int) -> None:
    """The three rows of one kind of store: 1 session, then 8 on one store, then 8 on a store each."""
    for sessions, count in ((1, 1), (8, 1), (8, 8)):
        async with AsyncExitStack() as stack:
            stores = [await stack.enter_async_context(open_store(index)) for index in range(count)]
            # A warm-up turn per store: schema creation and first connections are not measured.
            await _run(stores, len(stores), len(stores), answer_chars)
            rate, latencies = await _run(stores, sessions, turns, answer_chars)
        print(
            f"{name:<26}{count:>7}{sessions:>9}{rate:>10,.0f}{statistics.median(latencies) * 1000:>10.2f}"
            f"{_p99(latencies) * 1000:>10.2f}",
            flush=True,
        )


async def main(
    turns: int, answer_chars: int, skip_postgres: bool, streams: int, per_batch: int, writes: int
) -> None:
    print(f"{turns} turns per run: a {len(QUESTION) + 5}-char question + a {answer_chars}-char answer each\n")
    print(f"{'store':<26}{'stores':>7}{'sessions':>9}{'turns/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        runs = iter(range(1_000_000))

        def sqlite(index: int) -> AbstractAsyncContextManager[SessionStore]:
            return SQLiteStore(folder / f"run-{next(runs)}.db")

        openers: list[tuple[str, Opener]] = [("sqlite (synchronous=full)", sqlite)]
        binaries = None if skip_postgres else find_binaries()
        server = None if binaries is None else PostgresServer(binaries)
        try:
            if server is not None:
                from lionflow.session.stores.postgres import PostgresStore

                for label, options in (("postgres", ""), ("postgres, async commit", ASYNC_COMMIT)):
                    dsn = server.database() + options

                    def postgres(index: int, dsn: str = dsn) -> AbstractAsyncContextManager[SessionStore]:
                        return PostgresStore(dsn, pool_size=1)

                    openers.append((label, postgres))
            for label, opener in openers:
                await _measure(label, opener, turns, answer_chars)
            if server is None:
                print(
                    "\n(postgres skipped: "
                    + ("--skip-postgres)" if skip_postgres else "no initdb/pg_ctl found)")
                )
            print(
                f"\nstream events: {writes} writes of {streams:,} streams x {per_batch} events "
                f"({len(_event(0, 1))} bytes each), one write after another\n"
            )
            print(f"{'store':<26}{'rows/write':>12}{'rows/s':>12}{'p50 ms':>10}{'max ms':>10}")
            for label, opener in openers:
                await _measure_events(label, opener, streams, per_batch, writes)
        finally:
            if server is not None:
                server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=800, help="turns per run, split over the sessions")
    parser.add_argument("--answer-chars", type=int, default=400, help="characters of each answer")
    parser.add_argument("--skip-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--streams", type=int, default=1000, help="streams in each event write")
    parser.add_argument("--events-per-write", type=int, default=2, help="events of each stream per write")
    parser.add_argument("--writes", type=int, default=20, help="event writes per store")
    args = parser.parse_args()
    anyio.run(
        main,
        args.turns,
        args.answer_chars,
        args.skip_postgres,
        args.streams,
        args.events_per_write,
        args.writes,
    )
