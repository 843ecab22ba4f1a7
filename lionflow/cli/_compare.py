"""`lionflow compare`: one prompt to 2 to 6 models at once, streamed side by side, then a table."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import anyio
from rich.console import Console, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from lionflow.cli._paths import default_db_path
from lionflow.cli._text import one_line, printable
from lionflow.errors import ConfigurationError, LionflowError
from lionflow.services.imodel import iModel
from lionflow.services.response import Response

MIN_MODELS, MAX_MODELS = 2, 6
PANE_LINES = 12  # lines of text a pane shows: the tail of its reply
REFRESH_SECONDS = 1 / 15  # at most this often a chunk redraws the panes

EPILOG = """\
examples:
  lionflow compare "Explain TCP in one line" -m gpt=openai:gpt-4o-mini \
      -m claude=anthropic:claude-3-5-haiku-latest
  lionflow compare "hello" -m a=scripted:echo -m b=scripted:echo -o b.delay=0.05 --json
  lionflow compare "hello" -m a=scripted:echo -m b=scripted:echo --save --db chat.db

-o NAME.KEY=VALUE gives model NAME an iModel option; VALUE is read as JSON when it is JSON, else as
text: -o gpt.temperature=0.2, -o gpt.max_tokens=200. The offline provider "scripted" takes its own:
-o a.delay=0.05 (seconds before each chunk), -o a.chunk_size=3, -o 'a.responses=["Hi there"]'.

--save records the prompt and each model's reply as a branch (named after the model) of one new
session in an SQLite file (--db, default: $XDG_DATA_HOME/lionflow/lionflow.db, else
~/.local/share/lionflow/lionflow.db); `lionflow sessions` lists, shows and exports it.
Ctrl-C stops every stream: the partial replies are shown (and saved) as incomplete; exit status 130.
"""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    provider: str
    model: str


def _spec(text: str) -> ModelSpec:
    name, equals, target = text.partition("=")
    provider, colon, model = target.partition(":")
    if not (equals and colon and name and provider and model):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=PROVIDER:MODEL, e.g. gpt=openai:gpt-4o-mini"
        )
    return ModelSpec(name, provider, model)


def _option(text: str) -> tuple[str, str, Any]:
    target, equals, raw = text.partition("=")
    name, dot, key = target.partition(".")
    if not (equals and dot and name and key.isidentifier()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME.KEY=VALUE, e.g. gpt.temperature=0.2")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw  # not JSON: the text as it is
    return name, key, value


@dataclass(slots=True)
class _Pane:
    """One model's stream as it arrives, and its Response once it has ended."""

    spec: ModelSpec
    text: str = ""
    chunks: int = 0
    state: str = "waiting"  # waiting, streaming, done, incomplete, failed
    response: Response | None = None
    error: str | None = None


class _View:
    """The panes side by side in a rich Live display, redrawn as chunks arrive."""

    def __init__(self, panes: list[_Pane], console: Console) -> None:
        self.panes = panes
        self.console = console
        self.live: Live | None = None
        self._last = 0.0

    def render(self) -> RenderableType:
        width = max(12, self.console.width // len(self.panes))
        grid = Table.grid(expand=True)
        for _ in self.panes:
            grid.add_column(ratio=1)
        grid.add_row(*(self._panel(pane, width) for pane in self.panes))
        return grid

    def _panel(self, pane: _Pane, width: int) -> Panel:
        # The tail of the text: wrapped to the pane's width here, so that the last lines show.
        lines = Text(printable(pane.text)).wrap(self.console, max(4, width - 4))
        body = Text("\n").join(lines[-PANE_LINES:])
        status = {
            "waiting": "waiting",
            "streaming": f"streaming · {pane.chunks} chunks",
            "done": f"done · {pane.chunks} chunks",
            "incomplete": "stopped · INCOMPLETE",
            "failed": "failed",
        }[pane.state]
        return Panel(body, title=Text(pane.spec.name), subtitle=status, height=PANE_LINES + 2)

    def changed(self, *, now: bool = False) -> None:
        if self.live is None:
            return
        moment = time.monotonic()
        if now or moment - self._last >= REFRESH_SECONDS:
            self._last = moment
            self.live.update(self.render(), refresh=True)


def _models(specs: list[ModelSpec], options: list[tuple[str, str, Any]]) -> list[iModel]:
    settings: dict[str, dict[str, Any]] = {spec.name: {} for spec in specs}
    for name, key, value in options:
        settings[name][key] = value
    models = []
    for spec in specs:
        try:
            models.append(iModel(spec.provider, spec.model, name=spec.name, **settings[spec.name]))
        except TypeError as exc:  # an option iModel does not take
            raise ConfigurationError(f"model {spec.name}: {exc}") from None
    return models


async def _stream(turn: Any, pane: _Pane, view: _View) -> None:
    pane.state = "streaming"
    view.changed(now=True)
    try:
        async with turn:
            async for chunk in turn:
                pane.chunks += 1
                if chunk.type == "text":
                    pane.text += chunk.data
                view.changed()
    except LionflowError as error:  # this model failed: the others go on
        pane.error = str(error)
    finally:
        pane.response = turn.response
        if pane.error is not None:
            pane.state = "failed"
        else:
            pane.state = "incomplete" if pane.response is None or pane.response.incomplete else "done"
        view.changed(now=True)


async def _stop_on_interrupt(streams: anyio.CancelScope, stopped: list[bool]) -> None:
    """Ctrl-C cancels the streams (each turn then records what had arrived, as incomplete)."""
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            stopped.append(True)
            streams.cancel()
            return


def _row(pane: _Pane) -> dict[str, Any]:
    response = pane.response or Response(incomplete=True)
    usage = response.usage
    return {
        "name": pane.spec.name,
        "provider": pane.spec.provider,
        "model": pane.spec.model,
        "text": response.text,
        "characters": len(response.text),
        "chunks": response.chunk_count,
        "time_to_first_chunk": response.time_to_first_chunk,
        "duration": response.duration,
        "input_tokens": usage.input_tokens if usage else None,
        "output_tokens": usage.output_tokens if usage else None,
        "finish_reason": response.finish_reason,
        "incomplete": response.incomplete,
        "error": pane.error,
    }


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="compare")
    for column in (
        "model",
        "chars",
        "chunks",
        "first chunk",
        "duration",
        "tokens in",
        "tokens out",
        "finish",
    ):
        table.add_column(column, justify="left" if column in ("model", "finish") else "right")
    for row in rows:
        first = row["time_to_first_chunk"]
        finish = str(row["finish_reason"] or "-")
        if row["error"] is not None:
            finish = "error"
        elif row["incomplete"]:
            finish += " (incomplete)"
        table.add_row(
            Text(row["name"]),  # a name is text, not rich markup
            str(row["characters"]),
            str(row["chunks"]),
            "-" if first is None else f"{first:.3f}s",
            f"{row['duration']:.2f}s",
            "-" if row["input_tokens"] is None else str(row["input_tokens"]),
            "-" if row["output_tokens"] is None else str(row["output_tokens"]),
            finish,
        )
    return table


async def _compare(args: argparse.Namespace, specs: list[ModelSpec]) -> int:
    from lionflow.operations.communicate import communicate
    from lionflow.session.session import Session
    from lionflow.session.stores import SQLiteStore

    models = _models(specs, args.option)
    store = None
    if args.save:
        path = Path(args.db) if args.db else default_db_path()
        if not args.db:
            path.parent.mkdir(parents=True, exist_ok=True)
        store = SQLiteStore(path)
    try:
        if store is not None:
            await store.check(writable=True)  # a bad path fails before any model is called
        session = Session(store=store, metadata={"command": "compare", "prompt": args.prompt})
        turns = []
        for model in models:
            session.services.register(model)
            turns.append(communicate(session, model.name, instruction=args.prompt, imodel=model))
        panes = [_Pane(spec) for spec in specs]
        console = Console()
        view = _View(panes, console)
        stopped: list[bool] = []
        if not args.json:
            console.print(Text(f"Prompt: {args.prompt}", style="bold"))
            if console.is_terminal:  # piped: no animation, the panes once at the end
                view.live = Live(view.render(), console=console, auto_refresh=False)
                view.live.start()
        try:
            async with anyio.create_task_group() as watcher:
                streams = anyio.CancelScope()
                watcher.start_soon(_stop_on_interrupt, streams, stopped)
                with streams:
                    async with anyio.create_task_group() as group:
                        for turn, pane in zip(turns, panes, strict=True):
                            group.start_soon(_stream, turn, pane, view)
                watcher.cancel_scope.cancel()
        finally:
            if view.live is not None:
                view.live.update(view.render(), refresh=True)
                view.live.stop()
            elif not args.json:
                console.print(view.render())
        await session.flush()
    finally:
        if store is not None:
            await store.aclose()
    rows = [_row(pane) for pane in panes]
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False), flush=True)
    else:
        console.print(_table(rows))
        if store is not None:
            console.print(
                f"saved as session {session.id} in {store.path} (lionflow sessions show {session.id})",
                soft_wrap=True,
                highlight=False,
            )
    for pane in panes:
        if pane.error is not None:
            # one line, printable: the error may quote a server's text
            print(f"lionflow: {pane.spec.name}: {one_line(pane.error)}", file=sys.stderr)
    if stopped:
        return 130
    return 1 if any(pane.error is not None for pane in panes) else 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compare = commands.add_parser(
        "compare",
        help="one prompt to 2 to 6 models at once, streamed side by side, then a table",
        description="Send one prompt to 2 to 6 models at once: their replies stream side by side, "
        "then a table compares characters, chunks, time to first chunk, duration, tokens and finish reason.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument("prompt", help="the prompt every model receives")
    compare.add_argument(
        "-m",
        "--model",
        dest="models",
        action="append",
        type=_spec,
        default=[],
        metavar="NAME=PROVIDER:MODEL",
        help=f"a model to compare ({MIN_MODELS} to {MAX_MODELS}; repeat the flag)",
    )
    compare.add_argument(
        "-o",
        "--option",
        action="append",
        type=_option,
        default=[],
        metavar="NAME.KEY=VALUE",
        help="an iModel option for model NAME (repeatable; see below)",
    )
    compare.add_argument("--json", action="store_true", help="print one JSON line per model, no live view")
    compare.add_argument("--save", action="store_true", help="record each reply as a branch of one session")
    compare.add_argument("--db", metavar="PATH", help="the SQLite file --save writes (default: see below)")
    compare.set_defaults(run=_run, usage_error=compare.error)


def _run(args: argparse.Namespace) -> int:
    usage_error: Callable[[str], NoReturn] = args.usage_error
    specs: list[ModelSpec] = args.models
    if not MIN_MODELS <= len(specs) <= MAX_MODELS:
        usage_error(f"give {MIN_MODELS} to {MAX_MODELS} models with -m NAME=PROVIDER:MODEL, not {len(specs)}")
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        usage_error(f"each model needs a name of its own: {', '.join(repeated)} is given twice")
    unknown = sorted({name for name, _, _ in args.option if name not in names})
    if unknown:
        usage_error(f"-o names a model not given with -m: {', '.join(unknown)}")
    if args.db and not args.save:
        usage_error("--db is where --save writes: give --save too")
    return anyio.run(_compare, args, specs)
