"""The `lionflow` command (also `python -m lionflow`)."""

from __future__ import annotations

import argparse
import functools
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from lionflow.errors import ConfigurationError, LionflowError, MissingDependency, ProviderError
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


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _served_models(specs: Sequence[str], max_tokens: int) -> list[iModel]:
    """``NAME=PROVIDER:MODEL`` specs as models; none gives the demo default: a scripted echo model
    (needs nothing) and the local model of `lionflow demo` (never downloaded)."""
    models: list[iModel] = []
    for spec in specs:
        name, equals, target = spec.partition("=")
        provider, colon, model = target.partition(":")
        if not (equals and colon and name and provider and model):
            raise ConfigurationError(
                f"--model {spec!r}: expected NAME=PROVIDER:MODEL, e.g. gpt=openai:gpt-4o-mini"
            )
        models.append(iModel(provider=provider, model=model, name=name))
    if not models:
        local, note, _ = anyio.run(_local_model, DEFAULT_LOCAL_MODEL, max_tokens)
        local.name = "local"
        print(f"[serving the demo default: 'echo' (scripted) and 'local' ({note})]", flush=True)
        models = [ScriptedModel(name="echo"), local]
    return models


def _serve(args: argparse.Namespace) -> int:
    """Serve models over the OpenAI, Anthropic and Responses APIs until interrupted."""
    from lionflow.serve.config import ServeConfig, load_config
    from lionflow.session.stores import SQLiteStore

    config = load_config(args.config) if args.config else ServeConfig()
    settings = config.server
    # A flag given on the command line wins over the file, which wins over the defaults.
    host = args.host or settings.get("host", "127.0.0.1")
    port = args.port if args.port is not None else settings.get("port", 8000)
    key_variable = args.api_key_env or settings.get("api_key_env")
    api_keys = None
    if key_variable:
        # Keys come from the environment, never the command line (which other users can read).
        value = os.environ.get(key_variable, "")
        api_keys = [key.strip() for key in value.split(",") if key.strip()]
        if not api_keys:
            raise ConfigurationError(f"api key variable {key_variable}: it holds no keys")
    if host not in _LOOPBACK and api_keys is None and not args.insecure_public:
        raise ConfigurationError(
            f"--host {host} would serve to other machines with no API key required; "
            "give keys with --api-key-env, bind to 127.0.0.1, or pass --insecure-public"
        )
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependency("server", "uvicorn", "server", what="lionflow serve") from exc
    from lionflow.serve import create_app

    models = config.build_models()
    if args.model or not models:  # the file's models, and the flags'; neither: the demo default
        models += _served_models(args.model, args.max_tokens)
    tuning = ("resume_grace", "resume_ttl", "max_body_bytes", "ping_interval")
    options = {key: settings[key] for key in tuning if key in settings}
    db = args.db or settings.get("db")
    store = SQLiteStore(db) if db else None
    if store is not None:
        anyio.run(functools.partial(store.check, writable=True))  # a bad path fails now, not per answer
    rate_limit = args.rate_limit or settings.get("rate_limit")
    app = create_app(models, api_keys=api_keys, store=store, rate_limit=rate_limit, **options)
    # A stream a client follows keeps uvicorn from stopping until it ends; two seconds, then the
    # lifespan cancels what still runs.
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
    )
    # Bound here, so that the address (with the port the system picked for --port 0) is printed
    # before the first request can arrive.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # listening before the address is printed: an early client waits, not refused
    host, port = sock.getsockname()[:2]
    print(
        f"lionflow serving on http://{host}:{port}/v1 (models: {', '.join(app.state.model_names)})",
        flush=True,
    )
    try:
        server.run(sockets=[sock])
    finally:
        if store is not None:
            anyio.run(store.aclose)  # the writes of the last answers land before the process ends
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lionflow", description="lionflow command-line tools")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a parallel comparison flow on a local model, streamed, offline")
    demo.add_argument("--prompt", default="Write a short story about a robot learning to paint")
    demo.add_argument(
        "--model", default=DEFAULT_LOCAL_MODEL, help="Hugging Face Hub id (cached) or local folder"
    )
    demo.add_argument("--max-tokens", type=int, default=60)
    demo.add_argument("--scripted", action="store_true", help="use deterministic scripted models instead")
    demo.add_argument("--delay", type=float, default=0.02, help="seconds between scripted chunks")
    serve = commands.add_parser("serve", help="serve models over the OpenAI Chat Completions API")
    serve.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PROVIDER:MODEL",
        help="a model to serve (repeatable); none serves a scripted echo model and the local demo model",
    )
    serve.add_argument("--config", metavar="FILE", help="a TOML file of models and server settings")
    serve.add_argument(
        "--db",
        metavar="PATH",
        help="an SQLite file that records every answer as a session turn, keeps it for GET by its id, "
        "and keeps streams to resume after a restart (previous_response_id and background need it)",
    )
    serve.add_argument("--host", help="default 127.0.0.1")
    serve.add_argument("--port", type=int, help="default 8000; 0 picks a free port")
    serve.add_argument("--max-tokens", type=int, default=256, help="the local demo model's reply limit")
    serve.add_argument(
        "--api-key-env",
        metavar="VARIABLE",
        help="an environment variable holding the API keys, comma-separated",
    )
    serve.add_argument(
        "--rate-limit",
        metavar="LIMIT",
        help="requests each key (each client address, without keys) may make, e.g. 60/minute",
    )
    serve.add_argument(
        "--insecure-public", action="store_true", help="allow a non-loopback --host without API keys"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
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
