"""Time per delta: the raw official SDK vs. lionflow's iModel over the SDK (``transport="sdk"``) and
over its native transport (``transport="native"``), on the same loopback stream.

    .venv/bin/python benchmarks/provider_overhead.py [--deltas 20000] [--rounds 5] [--only anthropic]
        [--clock cpu|wall]

For each provider API it generates one body of N text deltas in that provider's wire format, serves
it from a loopback server in its own process (tests/loopback.py), and streams it through the raw SDK
(reading each event's text, the least a caller does), through `iModel.invoke()` with the SDK, and
through `iModel.invoke()` with the native transport. All three are measured in the same run, in a
round-robin whose order flips every round (so that no side always runs first, or last, on a warm
or busy machine); the table shows the best round of each. Targets: lionflow-sdk adds at most 10%
over the raw SDK, and lionflow-native costs at most 1/5 of the raw SDK per delta, for every
provider. A provider whose native transport does not exist yet shows "n/a".

The clock is the client process's CPU time by default (`time.process_time`: what decides how many
streams a core carries, and steady on a machine others share); ``--clock wall`` times wall-clock
seconds instead, which on an idle machine is the same figure plus waits on the server.

A last line times JSON decoding of the same bodies' events, msgspec (what the native transport
uses) against orjson, when orjson is installed (it is not a dependency of lionflow).
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from _bodies import MESSAGES, WIRES, event_payloads, has_native, loopback_model

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1 / 5  # native's per-delta cost over the raw SDK's, at most


# -- the raw SDK side: read each event's text, nothing more ------------------------------------------


async def raw_openai_chat(url: str) -> int:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key="test", max_retries=0)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "go"}], stream=True
    )
    count = 0
    async for event in stream:
        if event.choices and event.choices[0].delta.content:
            count += 1
    await client.close()
    return count


async def raw_openai_responses(url: str) -> int:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key="test", max_retries=0)
    stream = await client.responses.create(model="m", input="go", stream=True)
    count = 0
    async for event in stream:
        if event.type == "response.output_text.delta" and event.delta:
            count += 1
    await client.close()
    return count


async def raw_anthropic(url: str) -> int:
    from anthropic import AsyncAnthropic

    client = AsyncAnthropic(base_url=url, api_key="test", max_retries=0)
    stream = await client.messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "go"}], stream=True
    )
    count = 0
    async for event in stream:
        if event.type == "content_block_delta" and event.delta.type == "text_delta" and event.delta.text:
            count += 1
    await client.close()
    return count


async def raw_groq(url: str) -> int:
    from groq import AsyncGroq

    client = AsyncGroq(base_url=url, api_key="test", max_retries=0)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "go"}], stream=True
    )
    count = 0
    async for event in stream:
        if event.choices and event.choices[0].delta.content:
            count += 1
    await client.close()
    return count


async def raw_gemini(url: str) -> int:
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="test", http_options=types.HttpOptions(base_url=url, api_version="v1beta"))
    count = 0
    async for event in await client.aio.models.generate_content_stream(model="m", contents="go"):
        if event.text:
            count += 1
    return count


RAW: dict[str, Callable[[str], Awaitable[int]]] = {
    "openai chat": raw_openai_chat,
    "openai responses": raw_openai_responses,
    "anthropic": raw_anthropic,
    "groq": raw_groq,
    "gemini": raw_gemini,
}


async def lionflow_stream(label: str, url: str, transport: str) -> int:
    model = loopback_model(label, url, transport)
    count = 0
    async for chunk in model.invoke(messages=MESSAGES):
        if chunk.type == "text":
            count += 1
    await model.aclose()
    return count


CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


async def _timed(run: Callable[[], Awaitable[int]], expected: int) -> float:
    started = clock()
    count = await run()
    elapsed = clock() - started
    if count != expected:
        raise RuntimeError(f"expected {expected} deltas, got {count}")
    return elapsed


async def measure(label: str, url: str, deltas: int, rounds: int) -> dict[str, float]:
    """The best time of each side over `rounds` rounds after one untimed warm-up round, in seconds
    (no "native" where that is n/a)."""
    sides: dict[str, Callable[[], Awaitable[int]]] = {
        "raw": lambda: RAW[label](url),
        "sdk": lambda: lionflow_stream(label, url, "sdk"),
    }
    if await has_native(label, url):
        sides["native"] = lambda: lionflow_stream(label, url, "native")
    for run in sides.values():  # untimed: imports, the first connection, caches
        await _timed(run, deltas)
    times: dict[str, list[float]] = {side: [] for side in sides}
    order = list(sides)
    for round_ in range(rounds):
        for side in order if round_ % 2 == 0 else reversed(order):
            times[side].append(await _timed(sides[side], deltas))
    return {side: min(values) for side, values in times.items()}


def _row(label: str, best: dict[str, float], deltas: int) -> tuple[str, bool | None]:
    raw, sdk = best["raw"] / deltas * 1e6, best["sdk"] / deltas * 1e6
    cells = f"{label:<18}{raw:>10.2f}{sdk:>14.2f}{(sdk - raw) / raw * 100:>9.1f}%"
    if "native" not in best:
        return cells + f"{'n/a':>17}{'n/a':>12}{'n/a':>8}", None
    native = best["native"] / deltas * 1e6
    met = native / raw <= TARGET_RATIO
    return cells + f"{native:>17.2f}{native / raw:>12.3f}{'yes' if met else 'NO':>8}", met


def decode_line(labels: list[str], deltas: int, rounds: int) -> str | None:
    """msgspec vs orjson, microseconds per event decoded to Python objects, on the bodies of
    `labels`; None when either is not installed."""
    try:
        msgspec = importlib.import_module("msgspec")
        orjson = importlib.import_module("orjson")
    except ImportError:
        return None
    decoders: dict[str, Callable[[bytes], object]] = {
        "msgspec": msgspec.json.Decoder().decode,  # the native transport's decoder, as it builds it
        "orjson": orjson.loads,
    }
    parts = []
    totals = dict.fromkeys(decoders, 0.0)
    order = list(decoders)
    for label in labels:
        payloads = event_payloads(WIRES[label].build(deltas))
        best = dict.fromkeys(decoders, float("inf"))
        for round_ in range(rounds):
            for name in order if round_ % 2 == 0 else reversed(order):
                decode = decoders[name]
                started = time.perf_counter()
                for payload in payloads:
                    decode(payload)
                best[name] = min(best[name], time.perf_counter() - started)
        per_event = {name: seconds / len(payloads) * 1e6 for name, seconds in best.items()}
        for name, micros in per_event.items():
            totals[name] += micros
        parts.append(f"{label} {per_event['msgspec']:.2f} vs {per_event['orjson']:.2f}")
    ratio = totals["orjson"] / totals["msgspec"]
    return (
        f"JSON decode us/event, msgspec vs orjson (best of {rounds}): {', '.join(parts)}; "
        f"orjson/msgspec {ratio:.2f}x"
    )


async def bench(deltas: int, rounds: int, only: list[str]) -> None:
    labels = [label for label in WIRES if not only or label in only]
    print(f"{deltas:,} text deltas per stream, best of {rounds} rounds (order flips each round), ", end="")
    kind = "client CPU" if clock is time.process_time else "wall-clock"
    print(f"loopback server in its own process; {kind} us per delta\n")
    print(f"{'provider':<18}{'raw SDK':>10}{'lionflow-sdk':>14}{'sdk/raw':>10}", end="")
    print(f"{'lionflow-native':>17}{'native/raw':>12}{'<=1/5':>8}")
    verdicts: dict[str, bool | None] = {}
    with tempfile.TemporaryDirectory() as folder:
        for label in labels:
            body = Path(folder) / f"{label.replace(' ', '_')}.sse"
            body.write_text(WIRES[label].build(deltas))
            server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
                [sys.executable, "-m", "tests.loopback", str(body)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert server.stdout is not None
                url = server.stdout.readline().strip()
                best = await measure(label, url, deltas, rounds)
            finally:
                server.terminate()
                server.wait()
            line, verdicts[label] = _row(label, best, deltas)
            print(line, flush=True)
    missing = [label for label, met in verdicts.items() if met is None]
    failed = [label for label, met in verdicts.items() if met is False]
    verdict = "met" if not missing and not failed else "NOT met"
    if failed:
        verdict += f"; over 1/5: {', '.join(failed)}"
    if missing:
        verdict += f"; no native transport yet: {', '.join(missing)}"
    print(f"\ntarget: lionflow-native at most 1/5 of the raw SDK per delta, every provider: {verdict}")
    decoding = decode_line(labels, deltas, rounds)
    if decoding is not None:
        print(decoding)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deltas", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clock", choices=list(CLOCKS), default="cpu", help="what a round's time is")
    parser.add_argument("--only", nargs="*", default=[], help="provider labels to run, e.g. 'openai chat'")
    args = parser.parse_args()
    unknown = sorted(set(args.only) - set(WIRES))
    if unknown:
        parser.error(f"unknown provider {', '.join(unknown)}; known: {', '.join(WIRES)}")
    clock = CLOCKS[args.clock]
    anyio.run(bench, args.deltas, args.rounds, args.only)
