"""Many streams at once on one core: lionflow's SDK transport vs. its native transport.

    .venv/bin/python benchmarks/concurrent_streams.py [--streams 100 1000 5000] [--deltas 200]
        [--provider "openai chat"] [--rounds 1]

A loopback server in another process (this script with ``--serve``, pinned to the other CPUs)
serves one body of N text deltas in the provider's wire format to every request, one event per
write, interleaving its connections. The client is one event loop (anyio, asyncio backend) pinned
to one CPU; it opens all the streams at once on one `iModel` (``max_concurrent=None``) and reads
them to the end, once over the SDK (``transport="sdk"``) and once natively (``transport="native"``),
the order flipping every round. For each it prints the wall time, the client's CPU seconds (user +
system, from getrusage), the streams completed without error, and the most streams open at once
(reading their answer at the same moment: a connection pool that serialized them would show here).

Connection limits: the native client has none. The SDKs' clients have their own pool (openai and
anthropic: 1,000 connections; groq: 100; gemini's httpx client: 100), which would queue the streams
beyond it; the benchmark gives the SDK client an unlimited pool of the same kind (see `widen_pool`),
so both sides run every stream at once (``--sdk-pool default`` keeps the SDK's own pool instead). Open
files: raised to what the streams need, in both processes.

Target: 1,000 concurrent streams complete with native, with CPU time at most a fifth of the SDK
transport's.
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from _bodies import MESSAGES, WIRES, has_native, loopback_model, raise_open_files
from anyio.abc import SocketAttribute, SocketStream

from lionflow import iModel

ROOT = Path(__file__).resolve().parent.parent
TARGET_STREAMS = 1000
TARGET_RATIO = 1 / 5  # native's CPU time over the SDK transport's, at most


# -- the server (its own process) ------------------------------------------------------------------

_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
)


def _pieces(body: bytes) -> list[bytes]:
    """The body as chunked-encoding pieces, one event each."""
    separator = b"\r\n\r\n" if b"\r\n\r\n" in body else b"\n\n"
    events = [event + separator for event in body.split(separator) if event]
    return [b"%x\r\n%s\r\n" % (len(event), event) for event in events] + [b"0\r\n\r\n"]


async def _answer(stream: SocketStream, pieces: list[bytes]) -> None:
    """Read one request (head and body) and stream the body back; a client that hung up is fine."""
    async with stream:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            head, _, rest = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(rest) < length:
                rest += await stream.receive()
            await stream.send(_HEAD)
            for piece in pieces:
                await stream.send(piece)  # each send is a checkpoint: connections interleave
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass


async def serve(body: bytes) -> None:
    """Serve `body` to every request on 127.0.0.1, forever; print the port first."""
    pieces = _pieces(body)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", backlog=65536)
    print(listener.extra(SocketAttribute.local_port), flush=True)

    async def answer(stream: SocketStream) -> None:
        await _answer(stream, pieces)

    await listener.serve(answer)


# -- the client ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the streams of one run did."""

    completed: int = 0
    open_now: int = 0
    peak_open: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    first_error: str = ""


@dataclass
class Result:
    wall: float
    cpu: float
    completed: int
    peak_open: int
    errors: Counter[str]
    first_error: str = ""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def widen_pool(model: iModel) -> str:
    """Give the SDK transport's HTTP client a pool without a connection limit, as the native
    client's, so that it runs every stream at once; says what it did."""
    adapter: Any = model.adapter
    client = adapter._client
    if hasattr(client, "with_options"):  # openai, anthropic, groq: a Stainless client
        sdk = importlib.import_module(type(client).__module__.split(".")[0])
        default = importlib.import_module(f"{sdk.__name__}._constants").DEFAULT_CONNECTION_LIMITS
        limits = type(default)(max_connections=None, max_keepalive_connections=100)
        adapter._client = client.with_options(http_client=sdk.DefaultAsyncHttpxClient(limits=limits))
        return (
            f"SDK client: {sdk.__name__}.DefaultAsyncHttpxClient(limits=max_connections=None) "
            f"(its default: {default.max_connections} connections)"
        )
    http = getattr(adapter, "_http", None)
    if http is not None and hasattr(http, "_transport"):  # gemini: lionflow's own httpx2 client
        httpx2 = importlib.import_module("httpx2")
        limits = httpx2.Limits(max_connections=None, max_keepalive_connections=100)
        http._transport = httpx2.AsyncHTTPTransport(limits=limits)
        return "SDK client: the adapter's httpx2 client given a transport with max_connections=None (was 100)"
    return "SDK client: its own pool, unchanged (no way found to widen it)"


async def _one(model: iModel, deltas: int, tally: Tally) -> None:
    count = 0
    reading = False
    try:
        async for chunk in model.invoke(messages=MESSAGES):
            if not reading:
                reading = True
                tally.open_now += 1
                tally.peak_open = max(tally.peak_open, tally.open_now)
            if chunk.type == "text":
                count += 1
    except Exception as error:  # counted, not raised: the figure is how many streams completed
        tally.errors[type(error).__name__] += 1
        tally.first_error = tally.first_error or f"{type(error).__name__}: {error}"
    else:
        if count == deltas:
            tally.completed += 1
        else:
            tally.errors[f"{count} deltas"] += 1
    finally:
        if reading:
            tally.open_now -= 1


async def run_streams(
    label: str, url: str, transport: str, streams: int, deltas: int, limit: float, *, widen: bool = True
) -> tuple[Result, str]:
    """`streams` streams at once over `transport`, after one untimed stream (imports, the pool);
    `widen`: the SDK transport's pool without a connection limit (`widen_pool`)."""
    model = loopback_model(label, url, transport, max_concurrent=None)
    if transport == "native":
        note = "native client: no connection limit"
    else:
        note = widen_pool(model) if widen else "SDK client: the SDK's own pool (--sdk-pool default)"
    try:
        await _one(model, deltas, Tally())
        tally = Tally()
        wall, cpu = time.perf_counter(), cpu_seconds()
        with anyio.move_on_after(limit) as scope:
            async with anyio.create_task_group() as group:
                for _ in range(streams):
                    group.start_soon(_one, model, deltas, tally)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        if scope.cancelled_caught:
            tally.errors[f"unfinished after {limit:g} s"] += streams - tally.completed - tally.errors.total()
    finally:
        await model.aclose()
    return Result(wall, cpu, tally.completed, tally.peak_open, tally.errors, tally.first_error), note


def _best(results: list[Result]) -> Result:
    """The best wall and CPU times of the rounds, and the worst completion."""
    worst = min(results, key=lambda result: result.completed)
    return Result(
        min(result.wall for result in results),
        min(result.cpu for result in results),
        worst.completed,
        min(result.peak_open for result in results),
        worst.errors,
        worst.first_error,
    )


async def bench(args: argparse.Namespace, url: str, client_cpu: int, server_cpus: list[int]) -> None:
    label, deltas = args.provider, args.deltas
    print(
        f"{label}: {deltas} deltas per stream, best of {args.rounds} round(s) (order flips each round); "
        f"client: one anyio/asyncio event loop on CPU {client_cpu}; "
        f"server: its own process on CPU {','.join(map(str, server_cpus))}\n"
    )
    header = f"{'streams':>8}  {'transport':<10}{'wall s':>9}{'CPU s':>9}{'CPU us/delta':>14}"
    print(header + f"{'completed':>13}{'peak open':>11}  errors")
    notes: set[str] = set()
    target: dict[str, Result] = {}
    transports = ["sdk", "native"] if await has_native(label, url) else ["sdk"]
    for streams in args.streams:
        results: dict[str, list[Result]] = {transport: [] for transport in transports}
        order = list(results)
        for round_ in range(args.rounds):
            for transport in order if round_ % 2 == 0 else reversed(order):
                result, note = await run_streams(
                    label, url, transport, streams, deltas, args.limit, widen=args.sdk_pool == "unlimited"
                )
                results[transport].append(result)
                notes.add(note)
        best = {transport: _best(values) for transport, values in results.items()}
        for transport, result in best.items():
            per_delta = result.cpu / (streams * deltas) * 1e6
            errors = ", ".join(f"{name} x{count}" for name, count in result.errors.most_common()) or "-"
            print(
                f"{streams:>8,}  {transport:<10}{result.wall:>9.2f}{result.cpu:>9.2f}{per_delta:>14.2f}"
                f"{f'{result.completed:,}/{streams:,}':>13}{result.peak_open:>11,}  {errors}"
            )
            if result.first_error:
                print(f"{'':>10}first error: {result.first_error[:300]}")
        if "native" in best:
            print(f"{'':>8}  native/sdk CPU {best['native'].cpu / best['sdk'].cpu:.3f}", flush=True)
        else:
            print(f"{streams:>8,}  {'native':<10}{'n/a (no native transport yet)':>30}", flush=True)
        if streams == TARGET_STREAMS:
            target = best
    for note in sorted(notes):
        print(note)
    if "native" in target:
        native, sdk = target["native"], target["sdk"]
        ratio = native.cpu / sdk.cpu
        met = native.completed == TARGET_STREAMS and ratio <= TARGET_RATIO
        print(
            f"target: {TARGET_STREAMS:,} concurrent streams complete with native, CPU at most 1/5 of the "
            f"SDK transport's: {'met' if met else 'NOT met'} (native {native.completed:,} completed, "
            f"CPU {native.cpu:.2f} s vs {sdk.cpu:.2f} s: {ratio:.3f})"
        )
    elif target:
        print(f"target: NOT met ({label} has no native transport yet)")
    else:
        print(f"target: not checked (run --streams {TARGET_STREAMS})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--deltas", type=int, default=200)
    parser.add_argument("--provider", default="openai chat", choices=list(WIRES))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--sdk-pool",
        choices=["unlimited", "default"],
        default="unlimited",
        help="the SDK transport's connection pool: without a limit (as native's), or the SDK's own",
    )
    parser.add_argument("--limit", type=float, default=900.0, help="seconds one run may take")
    parser.add_argument("--serve", metavar="BODY", help=argparse.SUPPRESS)  # the server process
    parser.add_argument("--cpus", type=int, nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Every stream is a socket in each process, plus what the interpreter holds.
    raise_open_files(2 * max(args.streams) + 1024)
    if args.serve:
        if args.cpus:
            os.sched_setaffinity(0, args.cpus)
        anyio.run(serve, Path(args.serve).read_bytes(), backend="asyncio")
        return
    cpus = sorted(os.sched_getaffinity(0))
    client_cpu, server_cpus = cpus[-1], cpus[:-1] or cpus  # alone, the server shares the one CPU
    os.sched_setaffinity(0, {client_cpu})
    with tempfile.TemporaryDirectory() as folder:
        body = Path(folder) / "body.sse"
        body.write_text(WIRES[args.provider].build(args.deltas))
        command = [sys.executable, __file__, "--serve", str(body), "--cpus", *map(str, server_cpus)]
        command += ["--streams", str(max(args.streams))]
        server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            url = f"http://127.0.0.1:{server.stdout.readline().strip()}"
            anyio.run(bench, args, url, client_cpu, server_cpus, backend="asyncio")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
