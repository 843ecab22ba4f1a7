"""Output guards on a streamed answer: what they cost the consumer, and how much text they read.

    .venv/bin/python benchmarks/guards.py [--deltas 2000] [--delay 0.0005] [--window 200] [--overlap 50]

A scripted model streams --deltas text deltas of 5 characters, --delay seconds apart (a model
generating). Measured in one run, for the same answer:

- no guard;
- a 1 ms guard (a sync check that sleeps 1 ms, run off the event loop) in hold mode: nothing
  unchecked is released, so the first character waits for the first window's check;
- the same guard in release-first mode: text goes out as it comes, checked behind it.

For each: time to the first released character, total duration, and the characters the check was
shown divided by the text's length (linear work: at most ``1 + overlap / window``).
"""

from __future__ import annotations

import argparse
import time

import anyio

from lionflow.guards import OutputGuard, Window
from lionflow.testing import ScriptedModel


async def _measure(deltas: int, delay: float, guard: OutputGuard | None) -> tuple[float, float]:
    text = "".join(f"w{n % 1000:03d} " for n in range(deltas))  # 5 characters a delta
    model = ScriptedModel(name="m", responses=[text], chunk_size=5, delay=delay, usage=False)
    started = time.perf_counter()
    first: float | None = None
    received = 0
    async with model.invoke("go", guards=[guard] if guard else []) as call:
        async for chunk in call:
            if chunk.type == "text" and chunk.data:
                if first is None:
                    first = time.perf_counter() - started
                received += len(chunk.data)
    total = time.perf_counter() - started
    assert received == len(text), "the guard let through less than the whole (clean) answer"
    assert first is not None
    return first, total


async def main(deltas: int, delay: float, window: int, overlap: int) -> None:
    length = deltas * 5
    print(f"{deltas} deltas of 5 characters, {delay * 1000:.2f} ms apart; window {window}, overlap {overlap}")
    print(f"{'':<24}{'first char s':>14}{'total s':>10}{'checked / text':>16}")
    runs = (("no guard", None), ("1 ms guard, hold", "hold"), ("1 ms guard, release_first", "release_first"))
    for label, mode in runs:
        shown: list[int] = []

        def check(text: Window, shown: list[int] = shown) -> bool:
            shown.append(len(text))
            time.sleep(0.001)
            return True

        guard = None if mode is None else OutputGuard(check, window=window, overlap=overlap, mode=mode)  # type: ignore[arg-type]
        first, total = await _measure(deltas, delay, guard)
        ratio = f"{sum(shown) / length:.3f}" if shown else "-"
        print(f"{label:<24}{first:>14.4f}{total:>10.3f}{ratio:>16}")
    print(f"(linear bound: 1 + overlap / window = {1 + overlap / window:.3f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=0.0005)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--overlap", type=int, default=50)
    arguments = parser.parse_args()
    anyio.run(main, arguments.deltas, arguments.delay, arguments.window, arguments.overlap)
