"""The `lionflow` command (also `python -m lionflow`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import anyio

from lionflow.services.errors import LionflowError
from lionflow.session.messages import InstructionContent, Message
from lionflow.testing import ScriptedModel

__all__ = ["main"]

DEMO_REPLY = (
    "A robot named ARU-7 found a brush in the workshop. At first it painted perfect grids, "
    "every line exactly one millimetre wide. Then a drop of blue fell by accident, and ARU-7 "
    "stopped to look at it for a long time. The next canvas had no grid at all."
)


async def _demo(prompt: str, delay: float) -> int:
    # The demo runs on ScriptedModel: no API key, no network. A local transformers model replaces it
    # once that provider lands.
    model = ScriptedModel(responses=[DEMO_REPLY], chunk_size=3, delay=delay, name="demo")
    message = Message(content=InstructionContent(instruction=prompt))
    print(f"User: {prompt}")
    print("Assistant: ", end="", flush=True)
    async with model.stream(messages=[message]) as call:
        async for chunk in call:
            print(chunk, end="", flush=True)
    response = call.response
    assert response is not None
    usage = response.usage
    print()
    print(
        f"\n[{response.provider}/{response.model}] {response.chunk_count} chunks, "
        f"finish_reason={response.finish_reason}, "
        f"first chunk after {response.time_to_first_chunk or 0:.3f}s, total {response.duration:.2f}s"
        + (f", tokens in/out {usage.input_tokens}/{usage.output_tokens}" if usage else "")
    )
    print("(scripted model: a deterministic offline reply, no API key needed)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lionflow", description="lionflow command-line tools")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="stream a reply to the terminal, offline")
    demo.add_argument("--prompt", default="Write a short story about a robot learning to paint")
    demo.add_argument("--delay", type=float, default=0.02, help="seconds between chunks")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return anyio.run(_demo, args.prompt, args.delay)
    except LionflowError as error:
        print(f"lionflow: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2
