"""`lionflow run FILE.py`: a flow from a file, shown live per operation.

The file defines ``build(session) -> Builder`` (the operations on that session, whose models it
registers). The live view has one row per operation: its state, the tail of its streaming text, its
chunks and its time; then the results. ``--json`` writes every event as a JSON line instead, for a
script to read.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio

from lionflow.cli._text import one_line, printable
from lionflow.errors import ConfigurationError, MissingDependency
from lionflow.operations import Builder, FlowEvent, flow_stream
from lionflow.services.chunk import Chunk
from lionflow.services.response import Response
from lionflow.session.session import Session

EXAMPLE = """example:
  lionflow run research.py            # research.py defines build(session) -> Builder
  lionflow run research.py --json     # one JSON line per event, for scripts

research.py:
  from lionflow.operations import Builder
  from lionflow.testing import ScriptedModel

  def build(session):
      session.services.register(ScriptedModel(name="m"))
      builder = Builder(session=session)
      facts = builder.communicate("List 3 facts about tea", imodel="m", name="facts")
      builder.communicate("Write a haiku", imodel="m", context_from=[facts], name="haiku")
      return builder
"""

OnError = Literal["fail_fast", "continue"]
_TAIL = 48  # characters of streaming text shown per row


def load_build(path: Path) -> Callable[[Session], Any]:
    """Import `path` and return its ``build`` function; a clear `ConfigurationError` for a missing
    file, one that fails to import, or one without ``build``. (`lionflow serve --flow` calls it
    once per run, `load_builder` once.)"""
    if not path.is_file():
        raise ConfigurationError(f"{path}: no such file; give a Python file that defines build(session)")
    spec = importlib.util.spec_from_file_location(f"lionflow_run_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    # Registered as any imported module is: dataclasses and pydantic find a class's module there.
    sys.modules[spec.name] = module
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # the file's own imports of its neighbours work
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: what broke, in one line, not our traceback
        sys.modules.pop(spec.name, None)
        raise ConfigurationError(f"{path}: cannot import it: {_described(exc)}") from None
    finally:
        sys.path.remove(folder)  # by value: the file may have put paths of its own in front
    build: Callable[[Session], Any] | None = getattr(module, "build", None)
    if not callable(build):
        raise ConfigurationError(f"{path}: defines no build(session) function returning a Builder")
    return build


def load_builder(path: Path, session: Session) -> Builder:
    """Import `path` and call its ``build(session)``; a clear `ConfigurationError` for a missing
    file, a file without ``build``, or a ``build`` that does not return a Builder."""
    build = load_build(path)
    try:
        builder = build(session)
    except Exception as exc:
        raise ConfigurationError(f"{path}: build(session) raised {_described(exc)}") from None
    if not isinstance(builder, Builder):
        raise ConfigurationError(f"{path}: build(session) returned {type(builder).__name__}, not a Builder")
    return builder


def _described(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}")


@dataclass
class _Row:
    name: str
    state: str = "waiting"
    text: list[str] = field(default_factory=list)
    chars: int = 0
    chunks: int = 0
    started: float | None = None
    ended: float | None = None

    def tail(self) -> str:
        text = printable("".join(self.text[-_TAIL:]).replace("\n", " "))
        return text[-_TAIL:]

    def seconds(self, now: float) -> str:
        if self.started is None:
            return ""
        return f"{(self.ended or now) - self.started:.2f}s"


def _result_text(result: Any) -> str:
    if isinstance(result, Response):
        return result.text
    if isinstance(result, list):
        return f"[{len(result)} items]"
    return repr(result)


def _event_json(op_name: str, operation_id: str, item: Chunk | FlowEvent) -> dict[str, Any]:
    if isinstance(item, FlowEvent):
        line: dict[str, Any] = {"event": item.kind, "operation": op_name, "id": operation_id}
        if item.kind in ("completed", "item"):
            result = item.result
            line["result"] = (
                result.model_dump(mode="json", exclude={"metadata"})
                if isinstance(result, Response)
                else result
            )
        if item.error is not None:
            line["error"] = f"{type(item.error).__name__}: {item.error}"
        return line
    return {"event": "chunk", "operation": op_name, "id": operation_id, "type": item.type, "data": item.data}


def _failures(failed: list[tuple[str, BaseException]]) -> int:
    """The operations that failed, one line each on stderr (the flow went on: `--on-error
    continue`; a stopped flow raises its one `FlowError` instead); the exit status."""
    for name, error in failed:
        print(f"lionflow: operation {name} failed: {_described(error)}", file=sys.stderr, flush=True)
    return 1 if failed else 0


async def _run_json(builder: Builder, on_error: OnError) -> int:
    failed: list[tuple[str, BaseException]] = []
    names = {op.id: op.name for op in builder.operations}
    async with flow_stream(builder, on_error=on_error) as stream:
        async for operation_id, item in stream:
            if isinstance(item, FlowEvent):  # a for_each child is named by its first event
                names[operation_id] = item.operation.name
                if item.kind == "failed":  # documented to carry its error
                    failed.append((item.operation.name, item.error or RuntimeError("no error given")))
            name = names.get(operation_id, operation_id)
            print(json.dumps(_event_json(name, operation_id, item), default=str), flush=True)
    return _failures(failed)


async def _run_live(builder: Builder, on_error: OnError) -> int:
    try:
        from rich.console import Console
        from rich.live import Live
        from rich.table import Table
        from rich.text import Text
    except ImportError as exc:
        raise MissingDependency("cli", "rich", "cli", what="lionflow run's live view") from exc

    rows = {op.id: _Row(op.name) for op in builder.operations}
    names = {op.id: op.name for op in builder.operations}

    def table() -> Table:
        now = time.monotonic()
        view = Table(expand=True)
        for column in ("operation", "state", "text", "chunks", "time"):
            view.add_column(column, no_wrap=column != "text", overflow="ellipsis")
        for row in rows.values():
            # Text, not rich markup: names and model text may hold brackets.
            view.add_row(Text(row.name), row.state, Text(row.tail()), str(row.chunks), row.seconds(now))
        return view

    console = Console()
    results: dict[str, Any] = {}
    failed: list[tuple[str, BaseException]] = []
    with Live(table(), console=console, refresh_per_second=12, transient=False) as live:
        async with flow_stream(builder, on_error=on_error) as stream:
            async for operation_id, item in stream:
                row = rows.get(operation_id)
                if row is None:  # a for_each child: shown as a row of its own
                    name = item.operation.name if isinstance(item, FlowEvent) else operation_id
                    row = rows[operation_id] = _Row(name)
                    names[operation_id] = name
                if isinstance(item, FlowEvent):
                    if item.kind == "started":
                        row.state, row.started = "running", time.monotonic()
                    elif item.kind != "item":
                        row.state, row.ended = item.kind, time.monotonic()
                        if item.kind == "completed":
                            results[operation_id] = item.result
                        if item.error is not None:
                            row.text = [_described(item.error)]
                        if item.kind == "failed":
                            failed.append((row.name, item.error or RuntimeError("no error given")))
                elif item.type == "text":
                    row.chunks += 1
                    row.chars += len(item.data)
                    row.text.append(item.data)
                live.update(table())
    for operation_id, result in results.items():
        console.print(Text.assemble((names[operation_id], "bold"), f": {printable(_result_text(result))}"))
    return _failures(failed)


def _run(args: argparse.Namespace) -> int:
    session = Session()
    builder = load_builder(Path(args.file), session)
    runner = _run_json if args.json else _run_live
    return anyio.run(runner, builder, args.on_error)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="run a flow from a file defining build(session) -> Builder, shown live per operation",
        description="Run a flow from a Python file that defines build(session) -> Builder.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("file", metavar="FILE.py", help="the file defining build(session)")
    run.add_argument("--json", action="store_true", help="one JSON line per event instead of the live view")
    run.add_argument(
        "--on-error",
        choices=("fail_fast", "continue"),
        default="fail_fast",
        help="stop at the first failure (default) or let the other operations finish",
    )
    run.set_defaults(run=_run)
