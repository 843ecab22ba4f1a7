"""`lionflow serve`: models over the OpenAI, Anthropic and Responses APIs."""

from __future__ import annotations

import argparse
import functools
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from lionflow.cli._demo import DEFAULT_LOCAL_MODEL, _local_model
from lionflow.cli._run import load_build
from lionflow.errors import ConfigurationError, MissingDependency
from lionflow.services.imodel import iModel
from lionflow.testing import ScriptedModel

if TYPE_CHECKING:
    from lionflow.serve.app import FlowBuild

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _flow_files(specs: Sequence[str], configured: Mapping[str, Path]) -> dict[str, Path]:
    """The configuration's flows with the ``NAME=FILE.py`` specs of ``--flow`` over them (a flag
    wins over the file for a name both give)."""
    given: dict[str, Path] = {}
    for spec in specs:
        name, equals, file = spec.partition("=")
        name, file = name.strip(), file.strip()
        if not (equals and name and file) or "/" in name:
            raise ConfigurationError(
                f"--flow {spec!r}: expected NAME=FILE.py (a name without '/'), e.g. research=research.py"
            )
        if name in given:
            raise ConfigurationError(f"--flow {spec!r}: a flow named {name!r} is already given")
        given[name] = Path(file)
    return dict(configured) | given


def _served_flows(files: Mapping[str, Path]) -> dict[str, FlowBuild]:
    """Each file's ``build(session)``, imported now (as `lionflow run` does), so that a file that
    is missing or fails to import stops the server before it starts."""
    return {name: load_build(path) for name, path in files.items()}


def _served_models(specs: Sequence[str], max_tokens: int, transport: str = "sdk") -> list[iModel]:
    """``NAME=PROVIDER:MODEL`` specs as models over `transport` where their provider has it (see
    `served_transport`); none gives the demo default: a scripted echo model (needs nothing) and the
    local model of `lionflow demo` (never downloaded)."""
    models: list[iModel] = []
    for spec in specs:
        name, equals, target = spec.partition("=")
        provider, colon, model = target.partition(":")
        if not (equals and colon and name and provider and model):
            raise ConfigurationError(
                f"--model {spec!r}: expected NAME=PROVIDER:MODEL, e.g. gpt=openai:gpt-4o-mini"
            )
        from lionflow.serve.config import served_transport

        served = served_transport(provider, None, transport)
        models.append(iModel(provider=provider, model=model, name=name, transport=served))
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

    flows = _served_flows(_flow_files(args.flow, config.flows))
    transport = args.transport or settings.get("transport", "sdk")
    models = config.build_models(transport=transport)
    if args.model or not models:  # the file's models, and the flags'; neither: the demo default
        models += _served_models(args.model, args.max_tokens, transport)
    tuning = ("resume_grace", "resume_ttl", "max_body_bytes", "ping_interval")
    options = {key: settings[key] for key in tuning if key in settings}
    db = args.db or settings.get("db")
    store = SQLiteStore(db) if db else None
    if store is not None:
        anyio.run(functools.partial(store.check, writable=True))  # a bad path fails now, not per answer
    rate_limit = args.rate_limit or settings.get("rate_limit")
    app = create_app(models, flows=flows, api_keys=api_keys, store=store, rate_limit=rate_limit, **options)
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
    served = f"models: {', '.join(app.state.model_names)}"
    if transport != "sdk":
        served += f"; transport: {transport}"
    if flows:
        served += f"; flows: {', '.join(flows)}"
    address = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"  # (IPv6 in brackets)
    print(f"lionflow serving on {address}/v1 ({served})", flush=True)
    print(f"playground: {address}/ (open it in a browser)", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        if store is not None:
            anyio.run(store.aclose)  # the writes of the last answers land before the process ends
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="serve models over the OpenAI Chat Completions API")
    serve.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PROVIDER:MODEL",
        help="a model to serve (repeatable); none serves a scripted echo model and the local demo model",
    )
    serve.add_argument(
        "--flow",
        action="append",
        default=[],
        metavar="NAME=FILE.py",
        help="a flow to serve at POST /v1/flows/NAME/runs (repeatable): a file defining "
        "build(session) -> Builder, as for `lionflow run`",
    )
    serve.add_argument(
        "--transport",
        choices=("sdk", "native"),
        help="how the models reach their providers: through the official SDKs (the default) or "
        "natively (httpx and lionflow's own decoding: far less CPU per delta; lionflow[native])",
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
    serve.set_defaults(run=_serve)
