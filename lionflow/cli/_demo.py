"""`lionflow demo`: a parallel comparison flow on the embedded default, streamed, offline."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import anyio

from lionflow.errors import MissingDependency, ProviderError
from lionflow.services.imodel import iModel
from lionflow.testing import ScriptedModel

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
        from lionflow.services.providers.transformers.tiny_model import build_tiny_model

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
    from lionflow.services.providers.transformers.loading import load_model

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


def _demo_models(delay: float) -> list[iModel]:
    return [
        ScriptedModel(responses=[reply], chunk_size=3, delay=delay * factor, name=name)
        for name, reply, factor in (
            ("brief", DEMO_REPLY.split(". ")[0] + ".", 1.0),
            ("full", DEMO_REPLY, 0.6),
        )
    ]


async def _demo(prompt: str, *, model_name: str, scripted: bool, delay: float, max_tokens: int) -> int:
    """A parallel comparison flow: one prompt, two model settings, streamed side by side."""
    from lionflow.operations import Builder, FlowEvent, flow_stream
    from lionflow.session.session import Session

    random_text = False
    models: list[iModel] = []
    if not scripted:
        try:
            local, note, random_text = await _local_model(model_name, max_tokens)
            path = local.model
            models = [
                iModel(
                    provider="transformers", model=path, device="cpu", max_tokens=max_tokens, name="greedy"
                ),
                iModel(
                    provider="transformers",
                    model=path,
                    device="cpu",
                    max_tokens=max_tokens,
                    temperature=0.9,
                    seed=7,
                    name="sampled",
                ),
            ]
            note += "; the two settings share the model and take turns on it"
        except MissingDependency:
            print('[transformers is not installed (pip install "lionflow[transformers]"): scripted models]')
            scripted = True
    if scripted:
        models = _demo_models(delay)
        note = "scripted models: deterministic offline replies, no API key needed"

    session = Session()
    builder = Builder(session=session)
    for model in models:
        session.services.register(model)
        builder.communicate(prompt, imodel=model.name, branch=model.name)
    names = {op.id: op.name for op in builder.operations}
    print(f"User: {prompt}")
    print(f"Streaming from {len(models)} operations at once: {', '.join(names.values())}")
    current = None
    async with flow_stream(builder) as stream:
        async for operation_id, item in stream:
            name = names[operation_id]
            if isinstance(item, FlowEvent):
                if item.kind == "completed":
                    response = item.result
                    usage = response.usage
                    tokens = f", tokens in/out {usage.input_tokens}/{usage.output_tokens}" if usage else ""
                    print(
                        f"\n[{name}] done: {response.chunk_count} chunks, "
                        f"finish_reason={response.finish_reason}, "
                        f"first chunk after {response.time_to_first_chunk or 0:.3f}s, "
                        f"total {response.duration:.2f}s{tokens}",
                        end="",
                    )
                    current = None
                continue
            if item.type != "text":
                continue
            if name != current:
                print(f"\n[{name}] ", end="")
                current = name
            print(_printable(item.data) if random_text else item.data, end="", flush=True)
    print(f"\n\n({note})")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="a parallel comparison flow on a local model, streamed, offline")
    demo.add_argument("--prompt", default="Write a short story about a robot learning to paint")
    demo.add_argument(
        "--model", default=DEFAULT_LOCAL_MODEL, help="Hugging Face Hub id (cached) or local folder"
    )
    demo.add_argument("--max-tokens", type=int, default=60)
    demo.add_argument("--scripted", action="store_true", help="use deterministic scripted models instead")
    demo.add_argument("--delay", type=float, default=0.02, help="seconds between scripted chunks")
    demo.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    return anyio.run(
        lambda: _demo(
            args.prompt,
            model_name=args.model,
            scripted=args.scripted,
            delay=args.delay,
            max_tokens=args.max_tokens,
        )
    )
