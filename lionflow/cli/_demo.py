"""`lionflow demo`: a parallel comparison flow on the embedded default, streamed, offline.

It never downloads unless asked: `lionflow demo --download` fetches the default model into the
Hugging Face cache once, with the Hub client's own download, where every later demo and chat finds it."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

import anyio

from lionflow.errors import (
    ConfigurationError,
    LionflowError,
    MissingDependency,
    ProviderConnectionError,
    ProviderError,
)
from lionflow.services.imodel import iModel
from lionflow.testing import ScriptedModel

DEFAULT_LOCAL_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The demo's local model: a 135M-parameter instruct model, used when it is in the Hugging Face cache."""

# What a transformers load of a causal LM reads, and nothing else (a repo may also hold ONNX,
# GGUF or training files): the weights, the config and every tokenizer file the known kinds use.
_MODEL_FILES = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
]

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


async def _local_model(name: str, max_tokens: int, *, folder: str | None = None) -> tuple[iModel, str, bool]:
    """The demo's model, a line saying what it is, and whether its text is random.

    Never downloads: `folder` (the cache's copy of `name`, just fetched), a model from the local
    Hugging Face cache, or a tiny one built here."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from lionflow.services.providers.transformers.loading import load_model

    random_text = False
    source = "a local folder" if await anyio.Path(name).is_dir() else "the Hugging Face cache"
    note = f"local model {name}, from {source}, on the CPU"
    try:
        # After a download this process's Hub client is online: load the cache's folder itself,
        # so that loading asks the network nothing.
        if folder is not None:
            name = folder
        await load_model(name, "cpu", None)
    except ProviderError:
        if folder is not None:
            raise
        print(f"[{name} is not in the local cache, and nothing is downloaded unless asked.]")
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


def _download_hint(model_name: str) -> str:
    command = "lionflow demo --download"
    if model_name != DEFAULT_LOCAL_MODEL:
        command += f" --model {shlex.quote(model_name)}"
    size = " (about 270 MB)" if model_name == DEFAULT_LOCAL_MODEL else ""
    return (
        f"For real text, run `{command}` on a machine with network access: it fetches "
        f"{model_name}{size} into the Hugging Face cache once, and every later demo uses it."
    )


async def _demo(
    prompt: str,
    *,
    model_name: str,
    scripted: bool,
    delay: float,
    max_tokens: int,
    folder: str | None = None,
) -> int:
    """A parallel comparison flow: one prompt, two model settings, streamed side by side.

    `folder` is the model's folder in the Hugging Face cache when `--download` has just fetched it."""
    from lionflow.operations import Builder, FlowEvent, flow_stream
    from lionflow.session.session import Session

    random_text = False
    models: list[iModel] = []
    if not scripted:
        try:
            local, note, random_text = await _local_model(model_name, max_tokens, folder=folder)
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
    if random_text:
        print(_download_hint(model_name))
    return 0


def _cached_folder(name: str) -> str | None:
    """`name`'s folder in the Hugging Face cache when it holds a loadable model, else None. No network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(name, allow_patterns=_MODEL_FILES, local_files_only=True)
    except LocalEntryNotFoundError:
        return None
    files = {path.name for path in Path(folder).iterdir()}
    has_weights = any(file.endswith(".safetensors") for file in files)
    return folder if "config.json" in files and has_weights else None


def _cannot_download(name: str, error: Exception) -> LionflowError:
    """One line saying why `name` could not be downloaded and what to do, from the Hub client's error."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    # The Hub client wraps a failure to reach the Hub (and falling back to the cache) in its own
    # errors: the first HTTP error or transport error in the chain says what happened.
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, HfHubHTTPError | httpx2.TransportError):
        cause = cause.__cause__
    status = cause.response.status_code if isinstance(cause, HfHubHTTPError) else None
    if status is not None and status < 500:  # no such repo, gated, ...: the Hub said so
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        return ProviderError(
            f"could not download {name} from {constants.ENDPOINT}: {first}", provider="transformers"
        )
    endpoint = constants.ENDPOINT
    where = f"$HF_ENDPOINT ({endpoint})" if os.environ.get("HF_ENDPOINT") else endpoint.split("://")[-1]
    if status is not None:
        why = f"answered HTTP {status} (it may be down for a while)"
    elif isinstance(cause, httpx2.TimeoutException):
        why = "did not answer in time"
    else:
        why = "cannot be reached from this machine"
    folder = Path(constants.HF_HUB_CACHE) / ("models--" + name.replace("/", "--"))
    return ProviderConnectionError(
        f"could not download {name}: {where} {why}. Run `lionflow demo --download` on a machine "
        f"with network access, or copy the folder {folder} from one to the same place here.",
        provider="transformers",
        retryable=False,
    )


def _download(name: str) -> str:
    """Fetch `name` into the Hugging Face cache (once) with a progress bar; return its folder there.

    Raises a one-line lionflow error, saying what to do, when the Hub cannot be reached or refuses."""
    if Path(name).is_dir():
        print(f"[{name} is a local folder: nothing to download.]")
        return name
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").upper() in ("1", "ON", "YES", "TRUE"):
            raise ConfigurationError(
                f"could not download {name}: {variable}={os.environ[variable]} is set, which forbids "
                f"downloads. Run `{variable}=0 lionflow demo --download` (or unset it) to fetch it."
            )
    try:
        import httpx2
        from huggingface_hub import HfApi, constants, snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RevisionResolutionError
        from huggingface_hub.utils.tqdm import disable_progress_bars
        from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs in the dev set
    except ImportError as exc:
        raise MissingDependency(
            "transformers", "huggingface_hub", "transformers", what="lionflow demo --download"
        ) from exc

    try:
        cached = _cached_folder(name)
    except HFValidationError as exc:
        raise ConfigurationError(f"--model {name!r} is neither a folder nor a Hugging Face Hub id") from exc
    # The bars are for the download: the demo that follows shows none (loading the weights draws one).
    quiet_after = not os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    if cached is not None:
        print(f"[{name} is already in the Hugging Face cache ({cached}): not downloading it again.]")
        if quiet_after:
            disable_progress_bars()
        return cached
    # Ask the Hub which commit `main` is first: with no network, that fails before anything is
    # announced, and it writes the ref by which later offline loads find the snapshot.
    hub_errors = (HfHubHTTPError, RevisionResolutionError, httpx2.HTTPError, OSError)
    try:
        revision = HfApi().resolve_revision(name)
    except hub_errors as exc:
        raise _cannot_download(name, exc) from exc
    size = " (about 270 MB)" if name == DEFAULT_LOCAL_MODEL else ""
    print(
        f"[Downloading {name}{size} from {constants.ENDPOINT} into the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}), once: later demos find it there.]",
        flush=True,
    )
    # The Hub client's own bars show on a terminal only; a plain tqdm shows wherever stderr goes,
    # so a download in a log says how far it got too. An explicit HF_HUB_DISABLE_PROGRESS_BARS wins.
    bars = tqdm if quiet_after else None
    try:
        folder = snapshot_download(name, revision=revision, allow_patterns=_MODEL_FILES, tqdm_class=bars)
    except hub_errors as exc:
        raise _cannot_download(name, exc) from exc
    if quiet_after:
        disable_progress_bars()
    print(f"[Downloaded {name} into {folder}.]", flush=True)
    return folder


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="a parallel comparison flow on a local model, streamed, offline",
        description=(
            f"One prompt, two settings of a local model ({DEFAULT_LOCAL_MODEL} when it is in the "
            "Hugging Face cache), streamed side by side. It never downloads unless asked: without the "
            "model it runs a tiny random-weight one, whose text is random, and says so."
        ),
        epilog=(
            "examples:\n"
            "  lionflow demo                   # offline: the cached model, or random text\n"
            "  lionflow demo --download        # fetch the model once (needs network), then run on it\n"
            "  lionflow demo --scripted        # deterministic scripted replies, no model at all"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--prompt", default="Write a short story about a robot learning to paint")
    demo.add_argument(
        "--model", default=DEFAULT_LOCAL_MODEL, help="Hugging Face Hub id (cached) or local folder"
    )
    demo.add_argument("--max-tokens", type=int, default=60)
    source = demo.add_mutually_exclusive_group()
    source.add_argument(
        "--download",
        action="store_true",
        help="download --model into the Hugging Face cache first (once; needs network access)",
    )
    source.add_argument("--scripted", action="store_true", help="use deterministic scripted models instead")
    demo.add_argument("--delay", type=float, default=0.02, help="seconds between scripted chunks")
    demo.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    # The download is one blocking step before the demo: Ctrl-C stops it like any command.
    folder = _download(args.model) if args.download else None
    return anyio.run(
        lambda: _demo(
            args.prompt,
            model_name=args.model,
            scripted=args.scripted,
            delay=args.delay,
            max_tokens=args.max_tokens,
            folder=folder,
        )
    )
