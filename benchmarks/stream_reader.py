"""Typed-stream reader throughput: lionflow's `stream_reader` against truss-chains' own.

    .venv/bin/python benchmarks/stream_reader.py [--megabytes 20] [--item-bytes 1024] [--skip-truss] [--json]

A stream of --megabytes of items, each about --item-bytes of JSON, is written once and read back
whole (every item validated into its pydantic model), best of five, fed:

- in 64 KiB chunks, as a socket would hand them over;
- in odd splits: chunks of 1, 3, 1,500, 8,191 and 65,537 bytes in turn, so that frames are cut
  everywhere (inside the kind byte, the length, the body).

truss-chains (the ``truss`` package, whose `truss_chains.streaming` the design copies) is measured
on the same bytes: its kind bytes and length prefix are lionflow's, so each reads the other's
frames. It is installed with ``pip install truss`` into a throwaway venv, benchmarks/.cache/
truss-venv, never into the project's (the first run needs PyPI and takes a minute or two; delete
the folder to reinstall), and runs in its own process with that venv's Python. If it cannot be
installed its column reads "n/a" with the reason. The two venvs may hold different pydantic
versions; both are printed. lionflow is measured before and after the peer, and keeps its best.

`reader_throughput()` returns the figures for other benchmarks (benchmarks/pipelined_flow.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pydantic

from lionflow import streams

HERE = Path(__file__).resolve().parent
TRUSS_VENV = HERE / ".cache" / "truss-venv"
_MARKER = ".stream-reader-installed"
KIB = 1024
CHUNKINGS: dict[str, list[int]] = {"64 KiB chunks": [64 * KIB], "odd splits": [1, 3, 1500, 8191, 65537]}
RUNS = 5


def _say(message: str) -> None:
    print(f"[{message}]", file=sys.stderr, flush=True)


# The peer's measurement, run by the truss venv's Python. It builds the same stream with the same
# model and chunkings, so only the reader differs. argv: megabytes, item bytes, chunkings (JSON), runs.
_PEER = r"""
import asyncio, json, sys, time
import pydantic
from truss_chains import streaming

class Item(pydantic.BaseModel):
    index: int
    text: str
    tags: list[str]

megabytes, item_bytes = float(sys.argv[1]), int(sys.argv[2])
chunkings, runs = json.loads(sys.argv[3]), int(sys.argv[4])
types = streaming.stream_types(Item)
writer = streaming.stream_writer(types)
pad = "x" * max(0, item_bytes - 60)
frames, size, index = [], 0, 0
while size < megabytes * 1024 * 1024:
    frame = bytes(writer.yield_item(Item(index=index, text=pad, tags=["a", "b"])))
    frames.append(frame); size += len(frame); index += 1
data = b"".join(frames)

def cut(sizes):
    chunks, at, i = [], 0, 0
    while at < len(data):
        chunks.append(data[at : at + sizes[i % len(sizes)]]); at += sizes[i % len(sizes)]; i += 1
    return chunks

async def read(chunks):
    async def source():
        for chunk in chunks:
            yield chunk
    count = 0
    async for _ in streaming.stream_reader(types, source()).read_items():
        count += 1
    return count

out = {"pydantic": pydantic.VERSION, "bytes": len(data), "items": index, "seconds": {}}
for name, sizes in chunkings.items():
    chunks = cut(sizes)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        count = asyncio.run(read(chunks))
        best = min(best, time.perf_counter() - start)
        assert count == index, (count, index)
    out["seconds"][name] = best
print(json.dumps(out))
"""


class Item(pydantic.BaseModel):
    index: int
    text: str
    tags: list[str]


TYPES = streams.stream_types(Item)


def build_stream(megabytes: float, item_bytes: int) -> tuple[bytes, int]:
    """The stream's bytes (items of about `item_bytes` each, no end frame: truss reads it too) and
    its item count."""
    writer = streams.stream_writer(TYPES)
    pad = "x" * max(0, item_bytes - 60)  # the rest of the JSON is about 60 bytes
    frames: list[bytes] = []
    size = index = 0
    while size < megabytes * 1024 * 1024:
        frame = writer.yield_item(Item(index=index, text=pad, tags=["a", "b"]))
        frames.append(frame)
        size += len(frame)
        index += 1
    return b"".join(frames), index


def cut(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    """`data` in chunks of `sizes`, cycled."""
    chunks = []
    at = turn = 0
    while at < len(data):
        size = sizes[turn % len(sizes)]
        chunks.append(data[at : at + size])
        at += size
        turn += 1
    return chunks


async def _read_all(chunks: list[bytes]) -> int:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    count = 0
    async for _ in streams.stream_reader(TYPES, source()).read_items():
        count += 1
    return count


def _best(run: Callable[[], int], expected: int) -> float:
    best = float("inf")
    for _ in range(RUNS):
        start = time.perf_counter()
        count = run()
        best = min(best, time.perf_counter() - start)
        assert count == expected, (count, expected)
    return best


def install_truss() -> Path:
    """The Python of the cached truss venv, installed first if need be. RuntimeError says why not."""
    python = TRUSS_VENV / "bin" / "python"
    if python.exists() and (TRUSS_VENV / _MARKER).exists():
        return python
    _say(f"installing truss into {TRUSS_VENV.relative_to(HERE.parent)} (once; a minute or two)")
    TRUSS_VENV.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(TRUSS_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "truss"],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise RuntimeError(f"{' '.join(step[-2:])}: {error}") from error
        if done.returncode != 0:
            log = [line for line in (done.stdout + done.stderr).splitlines() if "is ignored" not in line]
            raise RuntimeError(f"{' '.join(step[-2:])} failed: " + " | ".join(log[-3:]))
    (TRUSS_VENV / _MARKER).touch()
    return python


def _measure_truss(megabytes: float, item_bytes: int) -> dict[str, Any]:
    python = install_truss()
    command = [str(python), "-c", _PEER, str(megabytes), str(item_bytes), json.dumps(CHUNKINGS), str(RUNS)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            "the truss-chains run failed: " + " | ".join(done.stderr.strip().splitlines()[-3:])
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def reader_throughput(*, megabytes: float = 20, item_bytes: int = 1024, truss: bool = True) -> dict[str, Any]:
    """The figures: for each chunking, MB/s of lionflow's reader and of truss-chains' (None, with
    ``truss_note`` saying why, when it was not measured)."""
    data, count = build_stream(megabytes, item_bytes)
    figures: dict[str, Any] = {
        "megabytes": len(data) / 1e6,
        "items": count,
        "item_bytes": len(data) // count,
        "pydantic": pydantic.VERSION,
        "truss_pydantic": None,
        "truss_note": "",
        "rows": {},
    }
    cuts = {name: cut(data, sizes) for name, sizes in CHUNKINGS.items()}

    def measure_lionflow() -> None:
        for name, chunks in cuts.items():
            seconds = _best(lambda chunks=chunks: asyncio.run(_read_all(chunks)), count)  # type: ignore[misc]
            row = figures["rows"].setdefault(name, {"lionflow_mb_s": 0.0, "truss_mb_s": None})
            row["lionflow_mb_s"] = max(row["lionflow_mb_s"], len(data) / 1e6 / seconds)

    measure_lionflow()
    if not truss:
        figures["truss_note"] = "skipped (--skip-truss)"
        return figures
    try:
        peer = _measure_truss(megabytes, item_bytes)
    except RuntimeError as error:
        figures["truss_note"] = str(error)
        return figures
    # Before and after the peer, best of both: a shared machine's load drifts over a run.
    measure_lionflow()
    if peer["bytes"] != len(data):  # the same model and writer format: the very same bytes
        figures["truss_note"] = f"its stream was {peer['bytes']} bytes, not {len(data)}: not comparable"
        return figures
    figures["truss_pydantic"] = peer["pydantic"]
    for name, seconds in peer["seconds"].items():
        figures["rows"][name]["truss_mb_s"] = peer["bytes"] / 1e6 / seconds
    return figures


def format_table(figures: dict[str, Any]) -> str:
    """The figures as a small text table."""
    lines = [
        f"reader throughput: {figures['megabytes']:.1f} MB, {figures['items']} items of "
        f"{figures['item_bytes']} bytes, read whole and validated, best of {RUNS}",
        f"{'chunking':<16}{'lionflow MB/s':>15}{'truss-chains MB/s':>19}{'ratio':>8}",
    ]
    for name, row in figures["rows"].items():
        ours, theirs = row["lionflow_mb_s"], row["truss_mb_s"]
        peer = f"{theirs:.1f}" if theirs is not None else "n/a"
        ratio = f"{ours / theirs:.2f}x" if theirs else "-"
        lines.append(f"{name:<16}{ours:>15.1f}{peer:>19}{ratio:>8}")
    versions = f"pydantic {figures['pydantic']} (lionflow)"
    if figures["truss_pydantic"]:
        versions += f", {figures['truss_pydantic']} (truss venv)"
    lines.append(versions)
    if figures["truss_note"]:
        lines.append(f"truss-chains: n/a, {figures['truss_note']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=float, default=20)
    parser.add_argument("--item-bytes", type=int, default=1024)
    parser.add_argument("--skip-truss", action="store_true", help="measure lionflow alone")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = reader_throughput(
        megabytes=args.megabytes, item_bytes=args.item_bytes, truss=not args.skip_truss
    )
    print(json.dumps(figures, indent=2) if args.json else format_table(figures))


if __name__ == "__main__":
    main()
