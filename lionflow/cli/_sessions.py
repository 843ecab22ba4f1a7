"""`lionflow sessions`: list, show, export, delete and import the sessions stored in an SQLite file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from lionflow.cli._paths import default_db_path
from lionflow.cli._text import printable
from lionflow.errors import ConfigurationError, StoreError
from lionflow.session._transcript import branch_messages, label_and_text
from lionflow.session.stores import SessionInfo, SQLiteStore
from lionflow.session.stores.base import import_snapshot

EPILOG = """\
examples:
  lionflow sessions list
  lionflow sessions show 3f2a                 # an id, a unique start of one, or a session's name
  lionflow sessions export 3f2a --format markdown -o chat.md
  lionflow sessions export 3f2a > chat.json   # the store's own JSON format (Session.from_export)
  lionflow sessions delete 3f2a --yes
  lionflow sessions import chat.json          # an export, back into a file (created if needed)

Without --db, the file is $XDG_DATA_HOME/lionflow/lionflow.db, else ~/.local/share/lionflow/lionflow.db
(where `lionflow chat` and `lionflow compare --save` write). `delete` without --yes deletes nothing
and exits with status 2.
"""


def _store(args: argparse.Namespace) -> SQLiteStore:
    path = Path(args.db) if args.db else default_db_path()
    if args.action == "import":  # the one action that may start a file, as chat does
        if not args.db:
            path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(path)
    if not path.exists():
        raise StoreError(
            f"no database at {path}: nothing was saved there yet "
            "(lionflow chat or lionflow compare --save write one; --db PATH names another)"
        )
    return SQLiteStore(path)


def _name(info: SessionInfo) -> str:
    name = info.metadata.get("name")
    return name if isinstance(name, str) else ""


async def _find(store: SQLiteStore, ref: str) -> SessionInfo:
    """The session `ref` names: its id, its name, or the unique start of its id."""
    sessions = await store.list_sessions()
    for match in (
        [info for info in sessions if info.id == ref],
        [info for info in sessions if _name(info) == ref],
        [info for info in sessions if info.id.startswith(ref)],
    ):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            ids = ", ".join(info.id for info in match[:5])
            raise ConfigurationError(f"{ref!r} names {len(match)} sessions ({ids}): give more of the id")
    raise ConfigurationError(f"no session {ref!r} in {store.path} (lionflow sessions list shows them)")


def _when(info: SessionInfo) -> str:
    return info.updated_at.strftime("%Y-%m-%d %H:%M:%S")


async def _list(args: argparse.Namespace, store: SQLiteStore) -> int:
    sessions = await store.list_sessions()
    if args.json:
        for info in sessions:
            line = {
                "id": info.id,
                "name": _name(info) or None,
                "branches": info.branch_names,
                "messages": info.message_count,
                "created_at": info.created_at.isoformat(),
                "updated_at": info.updated_at.isoformat(),
            }
            print(json.dumps(line, ensure_ascii=False))
        return 0
    if not sessions:
        print(f"no sessions in {store.path}")
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=str(store.path))
    for column in ("id", "name", "branches", "messages", "updated (UTC)"):
        table.add_column(column, justify="right" if column == "messages" else "left", no_wrap=column == "id")
    for info in sessions:
        # Text, not rich markup: an id, a name or a branch's name may hold brackets (or escapes).
        cells = (info.id, _name(info), ", ".join(info.branch_names))
        table.add_row(*(Text(printable(cell)) for cell in cells), str(info.message_count), _when(info))
    Console().print(table)
    return 0


def _show(data: dict[str, Any], name: str) -> str:
    session = data["session"]
    lines = [f"session {session['id']}" + (f" ({name})" if name else ""), f"created {session['created_at']}"]
    for branch, messages in branch_messages(import_snapshot(data)):
        lines += ["", f"── branch {branch} ({len(messages)} messages)"]
        for message in messages:
            label, text = label_and_text(message)
            lines.append(f"[{label}] {text}")
    return printable("\n".join(lines)) + "\n"  # for a terminal: stored text may hold escapes


def _markdown(data: dict[str, Any], name: str) -> str:
    session = data["session"]
    lines = [
        f"# {name or 'Session ' + session['id']}",
        "",
        f"- id: `{session['id']}`",
        f"- created: {session['created_at']}",
    ]
    for key, value in session["metadata"].items():
        if key != "name":
            lines.append(f"- {key}: {json.dumps(value, ensure_ascii=False)}")
    for branch, messages in branch_messages(import_snapshot(data)):
        lines += ["", f"## Branch `{branch}`"]
        for message in messages:
            label, text = label_and_text(message)
            lines += ["", f"**{label}**", "", text]
    return "\n".join(lines) + "\n"


def _write(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot write {output}: {exc.strerror}") from None


async def _import(args: argparse.Namespace, store: SQLiteStore) -> int:
    try:
        data = json.loads(await anyio.Path(args.file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read {args.file}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigurationError(f"{args.file} is not JSON ({exc}): give a `sessions export` file") from None
    await store.check(writable=True)
    session_id = await store.import_session(data)  # malformed, or already there: ConfigurationError
    print(f"imported session {session_id} into {store.path}")
    return 0


async def _sessions(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        if args.action == "list":
            return await _list(args, store)
        if args.action == "import":
            return await _import(args, store)
        info = await _find(store, args.session)
        if args.action == "delete":
            if not args.yes:
                print(
                    f"lionflow: not deleted: add --yes to delete session {info.id} "
                    f"({info.message_count} messages in {len(info.branch_names)} branches)",
                    file=sys.stderr,
                )
                return 2
            await store.delete_session(info.id)
            print(f"deleted session {info.id}")
            return 0
        data = await store.export_session(info.id)
        if args.action == "show":
            _write(_show(data, _name(info)), None)
        elif args.format == "markdown":
            _write(_markdown(data, _name(info)), args.output)
        else:
            _write(json.dumps(data, indent=2, ensure_ascii=False) + "\n", args.output)
        return 0
    finally:
        await store.aclose()


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="PATH", help="the SQLite file (default: see `lionflow sessions -h`)")
    sessions = commands.add_parser(
        "sessions",
        help="list, show, export, delete and import stored sessions",
        description="The sessions stored in an SQLite file: list them, show one's branches and turns, "
        "export one as JSON (the store's own format) or Markdown, delete one, import an export.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = sessions.add_subparsers(dest="action", required=True, metavar="list|show|export|delete|import")
    listing = actions.add_parser("list", parents=[common], help="the sessions, most recently updated first")
    listing.add_argument("--json", action="store_true", help="one JSON line per session")
    show = actions.add_parser("show", parents=[common], help="a session's branches and turns")
    export = actions.add_parser("export", parents=[common], help="a session as JSON or Markdown")
    export.add_argument("--format", choices=("json", "markdown"), default="json")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    delete = actions.add_parser("delete", parents=[common], help="delete a session (needs --yes)")
    delete.add_argument("--yes", action="store_true", help="really delete it")
    importing = actions.add_parser("import", parents=[common], help="store a session from an export file")
    importing.add_argument("file", metavar="FILE", help="a JSON file written by `sessions export`")
    for action in (show, export, delete):
        action.add_argument("session", help="a session id, a unique start of one, or a session's name")
    sessions.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    return anyio.run(_sessions, args)
