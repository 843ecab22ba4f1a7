"""The `lionflow` command (also `python -m lionflow`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from lionflow.services.errors import LionflowError, MissingDependency, ProviderError
from lionflow.services.imodel import iModel
from lionflow.session.messages import InstructionContent, Message
from lionflow.testing import ScriptedModel

__all__ = ["DEFAULT_LOCAL_MODEL", "main"]

DEFAULT_LOCAL_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The demo's local model: a 135M-parameter instruct model, used when it is in the Hugging Face cache."""

DEMO_REPLY = (
    "A robot named ARU-7 found a brush in the workshop. At first it painted perfect grids, "
    "every line exactly one millimetre wide. Then a drop of blue fell by accident, and ARU-7 "
    "stopped to look at it for a long time. The next canvas had no grid at all."
)


def _tiny_model_path() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lionflow" / "tiny-llama-v1"
    if not (cache / "config.json").exists():
        from lionflow.services.providers.tiny_model import build_tiny_model

        build_tiny_model(cache)
    return cache


def _printable(text: str) -> str:
    # Random tokens can be any bytes, terminal escape sequences included: show them harmlessly.
    return "".join(c if c.isprintable() or c == "\n" else "\N{MIDDLE DOT}" for c in text)


async def _local_model(name: str, max_tokens: int) -> tuple[iModel, str, bool]:
    """The demo's model, a line saying what it is, and whether its text is random.

    Never downloads: a model from the local Hugging Face cache, or a tiny one built here."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from lionflow.services.providers.transformers_loading import load_model

    random_text = False
    try:
        await load_model(name, "cpu", None)
        note = f"local model {name}, from the Hugging Face cache, on the CPU"
    except ProviderError:
        print(f"[{name} is not in the local cache, and this demo never downloads.]")
        print("[Using a tiny random-weight model built locally instead: ITS TEXT IS RANDOM, by design.]")
        name = str(_tiny_model_path())
        await load_model(name, "cpu", None)
        note = "tiny random-weight Llama, never trained: the text above is random"
        random_text = True
    model = iModel(
        provider="transformers", model=name, device="cpu", max_tokens=max_tokens, temperature=0.7, seed=7
    )
    return model, note, random_text


async def _demo(prompt: str, *, model_name: str, scripted: bool, delay: float, max_tokens: int) -> int:
    random_text = False
    if not scripted:
        try:
            model, note, random_text = await _local_model(model_name, max_tokens)
        except MissingDependency:
            print('[transformers is not installed (pip install "lionflow[transformers]"): scripted model]')
            scripted = True
    if scripted:
        model = ScriptedModel(responses=[DEMO_REPLY], chunk_size=3, delay=delay, name="demo")
        note = "scripted model: a deterministic offline reply, no API key needed"
    message = Message(content=InstructionContent(instruction=prompt))
    print(f"User: {prompt}")
    print("Assistant: ", end="", flush=True)
    async with model.stream(messages=[message]) as call:
        async for chunk in call:
            print(_printable(chunk.data) if random_text else chunk.data, end="", flush=True)
    response = call.response
    assert response is not None
    usage = response.usage
    print()
    print(
        f"\n[{response.provider}] {response.chunk_count} chunks, finish_reason={response.finish_reason}, "
        f"first chunk after {response.time_to_first_chunk or 0:.3f}s, total {response.duration:.2f}s"
        + (f", tokens in/out {usage.input_tokens}/{usage.output_tokens}" if usage else "")
    )
    print(f"({note})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lionflow", description="lionflow command-line tools")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="stream a reply from a local model to the terminal, offline")
    demo.add_argument("--prompt", default="Write a short story about a robot learning to paint")
    demo.add_argument(
        "--model", default=DEFAULT_LOCAL_MODEL, help="Hugging Face Hub id (cached) or local folder"
    )
    demo.add_argument("--max-tokens", type=int, default=60)
    demo.add_argument("--scripted", action="store_true", help="use the deterministic scripted model instead")
    demo.add_argument("--delay", type=float, default=0.02, help="seconds between scripted chunks")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return anyio.run(
                lambda: _demo(
                    args.prompt,
                    model_name=args.model,
                    scripted=args.scripted,
                    delay=args.delay,
                    max_tokens=args.max_tokens,
                )
            )
    except LionflowError as error:
        print(f"lionflow: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2
