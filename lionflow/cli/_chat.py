"""`lionflow chat`: a streaming chat that persists every turn and resumes, with branches.

The prompt reads lines in the main thread (so Ctrl-C and Ctrl-D reach it as they would any
program); the session, the model and the streamed replies live on an event loop in a portal
thread. Ctrl-C during a reply interrupts the main thread's wait, which then stops the turn with
`Turn.aclose()` (the stop button of `communicate`): the partial answer is recorded as incomplete.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from lionflow.cli._paths import default_db_path
from lionflow.cli._text import one_line as _one_line
from lionflow.cli._text import printable as _printable
from lionflow.errors import ConfigurationError, LionflowError, MissingDependency
from lionflow.operations.communicate import Turn, communicate
from lionflow.services.imodel import iModel
from lionflow.session.branch import Branch
from lionflow.session.messages import AssistantResponseContent, InstructionContent, SystemContent
from lionflow.session.session import Session
from lionflow.session.stores import SQLiteStore

PROMPT = "> "
HELP = """\
/fork [NAME]          a new branch with this branch's history so far, and switch to it
/branches             the session's branches (* marks the current one)
/switch NAME          continue on another branch
/history              this branch's messages
/model PROVIDER:MODEL talk to another model from the next turn on
/help                 this list
/quit                 leave (Ctrl-D, or Ctrl-C at the prompt, too)"""

EPILOG = """\
examples:
  lionflow chat                                   # the embedded default model: no key, no network
  lionflow chat --model openai:gpt-4o-mini --session ideas --system "Be brief."
  lionflow chat --session ideas                   # later: resume it, on the model it last used
  lionflow chat --model scripted:echo -o delay=0.2   # an offline scripted model, 0.2 s per chunk

Every turn is stored in an SQLite file (--db; default $XDG_DATA_HOME/lionflow/lionflow.db, else
~/.local/share/lionflow/lionflow.db). A session's name is its id in that file: --session NAME
resumes it, or starts it when it does not exist; without --session a new one is named
chat-YYYYMMDD-HHMMSS (UTC). Ctrl-C during a reply stops it (kept as incomplete); at the prompt it
leaves. Type /help in the chat for its commands.
"""


def _option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``, the value read as JSON where it is JSON (``0.2``, ``true``), else as text."""
    key, equals, raw = text.partition("=")
    if not (equals and key):
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. temperature=0.2")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _model(spec: str, options: dict[str, Any]) -> iModel:
    provider, colon, model = spec.partition(":")
    if not (colon and provider and model):
        raise ConfigurationError(f"model {spec!r}: expected PROVIDER:MODEL, e.g. openai:gpt-4o-mini")
    return iModel(provider=provider, model=model, **options)


async def _default_model(max_tokens: int) -> iModel:
    """The embedded default of `lionflow demo`: it never downloads, and says what it is."""
    from lionflow.cli._demo import DEFAULT_LOCAL_MODEL, _local_model

    try:
        model, note, random_text = await _local_model(DEFAULT_LOCAL_MODEL, max_tokens)
    except MissingDependency:
        print('[transformers is not installed (pip install "lionflow[transformers]"): a scripted echo model]')
        return iModel(provider="scripted", model="echo")
    if random_text:
        print(
            "[model: a tiny random-weight Llama, never trained: ITS REPLIES ARE RANDOM. For real text, "
            f"give --model PROVIDER:MODEL, or put {DEFAULT_LOCAL_MODEL} in the Hugging Face cache]"
        )
    else:
        print(f"[model: {note}]")
    return model


class _Line(logging.Handler):
    """Whether a reply's line is still open on the terminal; and, as the handler of lionflow's log
    while the chat runs, a record (a turn that could not be stored, say) printed on a line of its
    own, once: with a handler of its own the log does not also reach Python's last-resort one."""

    open = False

    def end(self) -> None:
        if self.open:
            print(flush=True)
            self.open = False

    def emit(self, record: logging.LogRecord) -> None:
        self.end()
        print(_one_line(record.getMessage()), file=sys.stderr, flush=True)


_LINE = _Line(logging.WARNING)


@dataclass
class _Reply:
    """One reply being streamed; the main thread stops it through `Chat.stop`."""

    text: str
    turn: Turn[Any] | None = None
    stopped: bool = False


@dataclass
class Chat:
    """The chat's state. Used only on the event loop's thread (through the portal)."""

    store: SQLiteStore
    session: Session
    branch: Branch
    model: iModel
    spec: str | None  # the model as PROVIDER:MODEL; None for the embedded default
    options: dict[str, Any] = field(default_factory=dict)

    async def reply(self, request: _Reply) -> None:
        """Stream the answer to `request.text`, printing chunks as they arrive; record the turn."""
        # Stored with the turn's write, so that a resumed chat continues where this one was.
        self.session.metadata["chat"] = {"branch": self.branch.name, "model": self.spec}
        try:
            async with communicate(
                self.session, self.branch, instruction=request.text, imodel=self.model
            ) as turn:
                request.turn = turn
                if request.stopped:  # Ctrl-C came before the turn existed
                    await turn.aclose()
                async for chunk in turn:
                    if chunk.type == "text" and chunk.data:
                        print(_printable(chunk.data), end="", flush=True)
                        _LINE.open = True
        except BaseException:
            _LINE.end()  # the error (of the stream, or of the turn's write) starts on a line of its own
            raise
        answer = turn.response_message
        content = answer.content if answer is not None else None
        if isinstance(content, AssistantResponseContent) and content.incomplete:
            print(" [stopped: kept as an incomplete answer]", end="", flush=True)
            _LINE.open = True
        _LINE.end()

    async def stop(self, request: _Reply) -> None:
        """Stop `request`'s reply (Ctrl-C); what had arrived is recorded as incomplete."""
        request.stopped = True
        if request.turn is not None:
            await request.turn.aclose()

    def command(self, line: str) -> bool:
        """Run a slash command; False when the chat should end."""
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            print(HELP)
        elif name == "/fork":
            self.branch = self.session.fork(self.branch, name=argument or None)
            print(f"[forked: now on branch {self.branch.name}]")
        elif name == "/branches":
            for branch in self.session.branches:
                mark = "*" if branch is self.branch else " "
                print(f"{mark} {branch.name} ({len(branch)} messages)")
        elif name == "/switch":
            if not argument:
                raise ConfigurationError("/switch needs a branch name; /branches lists them")
            self.branch = self.session.get_branch(argument)
            print(f"[now on branch {self.branch.name}, {len(self.branch)} messages]")
        elif name == "/history":
            self._history()
        elif name == "/model":
            self.model = _model(argument, self.options)
            self.spec = argument
            print(f"[model: {argument}]")
        else:
            print(f"[unknown command {name}; /help lists them]")
        return True

    def _history(self) -> None:
        print(f"[branch {self.branch.name}]")
        for message in self.branch.messages:
            content = message.content
            if isinstance(content, SystemContent):
                print(f"system: {_printable(content.system)}")
            elif isinstance(content, InstructionContent):
                print(f"you: {_printable(content.instruction)}")
            elif isinstance(content, AssistantResponseContent):
                text = _printable(content.assistant_response or "")
                suffix = " [incomplete]" if content.incomplete else ""
                name = (content.model or "assistant").rsplit("/", 1)[-1]  # a repo id or a folder: its name
                print(f"{name}: {text}{suffix}")

    async def aclose(self) -> None:
        await self.session.flush()
        await self.store.aclose()


def _db_path(given: str | None) -> Path:
    if given:
        return Path(given)
    path = default_db_path()
    path.parent.mkdir(parents=True, exist_ok=True)  # the default folder is ours to create
    return path


async def _open(args: argparse.Namespace) -> Chat:
    """Open the store and the session (new or resumed) and build the model; errors say what to do."""
    options = dict(args.option)
    model = _model(args.model, options) if args.model else None  # a bad --model fails before the store
    store = SQLiteStore(_db_path(args.db))
    try:
        await store.check(writable=True)
        name = args.session or f"chat-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        snapshot = await store.load_session(name)
        if snapshot is None:
            session = Session(store=store, id=name)
            branch = session.create_branch("main", system=args.system)
            print(f"[new session {name}: resume it with  lionflow chat --session {name}]")
            spec: str | None = args.model
        else:
            session = await Session.load(store, name)
            saved = session.metadata.get("chat") or {}
            wanted = saved.get("branch")
            branch = (
                session.get_branch(wanted) if wanted and session.has_branch(wanted) else session.branches[0]
            )
            print(f"[resumed session {name}, branch {branch.name}: {len(branch)} messages; see /history]")
            if args.system:
                print("[--system applies to new sessions: this one keeps its own]")
            spec = args.model or saved.get("model")
            if model is None and spec:
                model = _model(spec, options)
                print(f"[model: {spec}, as last time]")
        if model is None:
            model = await _default_model(args.max_tokens)
        elif args.model:
            print(f"[model: {spec}]")
        return Chat(store, session, branch, model, spec, options)
    except BaseException:
        await store.aclose()
        raise


def _reply(portal: BlockingPortal, chat: Chat, request: _Reply) -> None:
    """Stream a reply on the loop; Ctrl-C while it streams stops it (as often as it is pressed)."""
    future = portal.start_task_soon(chat.reply, request)
    while True:
        try:
            future.result()
            return
        except KeyboardInterrupt:
            # Not waited for here: the reply ends once stopped, and a second Ctrl-C meanwhile is fine.
            portal.start_task_soon(chat.stop, request)


def _loop(portal: BlockingPortal, chat: Chat) -> None:
    while True:
        try:
            line = input(PROMPT).strip()
        except (KeyboardInterrupt, EOFError):
            print()
            return
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not portal.call(chat.command, line):
                    return
            else:
                _reply(portal, chat, _Reply(line))
        except LionflowError as error:  # a failed turn or command: say so, and keep chatting
            print(f"lionflow: {_one_line(str(error))}", flush=True)  # it may quote a server's text


def _chat(args: argparse.Namespace) -> int:
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - line editing and history at the prompt, where available
    logger = logging.getLogger("lionflow")
    logger.addHandler(_LINE)
    try:
        with start_blocking_portal() as portal:
            chat = portal.call(_open, args)
            try:
                _loop(portal, chat)
            finally:
                portal.call(chat.aclose)
    finally:
        logger.removeHandler(_LINE)
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chat = commands.add_parser(
        "chat",
        help="a streaming chat that persists and resumes, with branches",
        description="Chat with a model; every turn is stored, and a session resumes by name.",
        epilog=textwrap.dedent(EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument(
        "--model", metavar="PROVIDER:MODEL", help="e.g. openai:gpt-4o-mini; default: the embedded local model"
    )
    chat.add_argument(
        "-o",
        "--option",
        action="append",
        type=_option,
        default=[],
        metavar="KEY=VALUE",
        help="a model option (repeatable), e.g. temperature=0.2, base_url=..., or delay=0.2 for scripted",
    )
    chat.add_argument("--db", metavar="PATH", help="the SQLite file (default: see below)")
    chat.add_argument("--session", metavar="NAME", help="resume this session, or start it under this name")
    chat.add_argument("--system", metavar="TEXT", help="the system prompt of a new session")
    chat.add_argument("--max-tokens", type=int, default=120, help="the embedded default model's reply limit")
    chat.set_defaults(run=_chat)
