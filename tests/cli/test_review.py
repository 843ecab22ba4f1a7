"""A hostile user's session with the commands: flow files that break, model text that holds
terminal escapes or rich markup, names with brackets, output piped into `head`. Every expected
error is one line and no traceback; model text never reaches the terminal raw."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pexpect

from tests.loopback import LoopbackServer, Reply

# An escape that would turn the terminal red, one that would set its title, and rich markup.
HOSTILE = "x\x1b[31mRED\x1b]0;pwned\x07 [/x] [bold]b\x9b"

CHAT = [sys.executable, "-m", "lionflow", "chat", "--model", "scripted:echo"]
FLOW = """
from lionflow.operations import Builder
from lionflow.testing import ScriptedModel


def build(session):
    session.services.register(
        ScriptedModel(name="m", responses=lambda messages: {text!r}, chunk_size={chunk}, delay={delay})
    )
    builder = Builder(session=session)
    builder.communicate("go", imodel="m", name={name!r})
    return builder
"""


def _flow(
    tmp_path: Path, *, text: str = "tea " * 6, name: str = "op", chunk: int = 4, delay: float = 0
) -> Path:
    path = tmp_path / "flow.py"
    path.write_text(FLOW.format(text=text, name=name, chunk=chunk, delay=delay))
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "COLUMNS": "100"}


def lionflow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lionflow", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_env(tmp_path),
    )


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lionflow: ")
    for needle in needles:
        assert needle in lines[0]


def test_run_a_build_that_raises_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "boom.py"
    path.write_text("def build(session):\n    raise RuntimeError('no key for the research model')\n")
    for args in ((), ("--json",)):
        result = lionflow(tmp_path, "run", str(path), *args)
        _one_line_error(result, "build(session)", "RuntimeError: no key for the research model")


def test_run_a_file_that_does_not_import_is_one_line_and_exit_1(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def build(session)\n    pass\n")
    _one_line_error(lionflow(tmp_path, "run", str(broken)), "SyntaxError", "line 1")
    missing_import = tmp_path / "needs.py"
    missing_import.write_text("import lionflow_no_such_module\n")
    _one_line_error(lionflow(tmp_path, "run", str(missing_import)), "lionflow_no_such_module")


def test_run_live_view_shows_hostile_text_and_names_harmlessly(tmp_path: Path) -> None:
    path = _flow(tmp_path, text=HOSTILE, name="op [/x]")
    result = lionflow(tmp_path, "run", str(path))  # piped: rich writes no escapes of its own
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "\x1b" not in result.stdout
    assert "\x07" not in result.stdout
    assert "\x9b" not in result.stdout
    assert "[/x] [bold]b" in result.stdout  # markup in model text is text
    assert "op [/x]" in result.stdout


def test_run_json_chunk_lines_name_their_operation(tmp_path: Path) -> None:
    result = lionflow(tmp_path, "run", str(_flow(tmp_path, name="facts")), "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {event["event"] for event in events} >= {"started", "chunk", "completed"}
    assert {event["operation"] for event in events} == {"facts"}


def test_output_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    path = _flow(tmp_path, chunk=1, delay=0.01)
    with subprocess.Popen(
        [sys.executable, "-m", "lionflow", "run", str(path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(tmp_path),
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        json.loads(process.stdout.readline())  # `| head -1`: one line read, then the pipe closes
        process.stdout.close()
        stderr = process.stderr.read().decode()
        process.wait(timeout=120)
    assert "Traceback" not in stderr
    assert process.returncode != 0  # as any command whose reader went away


def test_compare_panes_never_pass_escapes(tmp_path: Path) -> None:
    result = lionflow(
        tmp_path,
        "compare",
        "hi",
        "-m",
        "a=scripted:echo",
        "-m",
        "b=scripted:echo",
        "-o",
        f"a.responses={json.dumps([HOSTILE])}",
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "\x07" not in result.stdout
    assert "\x9b" not in result.stdout
    assert "[/x]" in result.stdout


def _store_session(tmp_path: Path, db: Path, session_id: str, reply: str) -> None:
    """One turn of `lionflow chat` (stdin piped) on a scripted model that answers `reply`."""
    result = subprocess.run(
        [*CHAT, "--db", str(db), "--session", session_id, "-o", f"responses={json.dumps([reply])}"],
        input="hi\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr


def test_sessions_show_never_passes_escapes(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _store_session(tmp_path, db, "hostile", HOSTILE)
    result = lionflow(tmp_path, "sessions", "show", "hostile", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "\x07" not in result.stdout
    assert "\x9b" not in result.stdout
    assert "RED" in result.stdout
    assert "[/x]" in result.stdout


def test_sessions_list_shows_names_with_brackets(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _store_session(tmp_path, db, "[/x] notes", "hello")
    result = lionflow(tmp_path, "sessions", "list", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert "[/x]" in result.stdout


def test_run_a_flow_file_with_dataclasses_and_future_annotations(tmp_path: Path) -> None:
    # As any module: dataclasses and pydantic look the file up in sys.modules by its name.
    header = "from __future__ import annotations\nfrom dataclasses import dataclass\n"
    classes = "\n\n@dataclass\nclass Note:\n    text: str\n"
    path = _flow(tmp_path, name="facts")
    path.write_text(header + path.read_text() + classes)
    result = lionflow(tmp_path, "run", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["event"] == "completed"


def test_sessions_export_delete_import_round_trips(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _store_session(tmp_path, db, "notes", "a reply worth keeping")
    exported = lionflow(
        tmp_path, "sessions", "export", "notes", "--db", str(db), "-o", str(tmp_path / "n.json")
    )
    assert exported.returncode == 0, exported.stderr
    assert lionflow(tmp_path, "sessions", "delete", "notes", "--yes", "--db", str(db)).returncode == 0
    imported = lionflow(tmp_path, "sessions", "import", str(tmp_path / "n.json"), "--db", str(db))
    assert imported.returncode == 0, imported.stderr
    assert "notes" in imported.stdout
    again = lionflow(tmp_path, "sessions", "export", "notes", "--db", str(db))
    assert json.loads(again.stdout) == json.loads((tmp_path / "n.json").read_text())
    # Once more: refused (its turns would be appended twice), in one line.
    _one_line_error(lionflow(tmp_path, "sessions", "import", str(tmp_path / "n.json"), "--db", str(db)))
    (tmp_path / "bad.json").write_text("{not json")
    _one_line_error(
        lionflow(tmp_path, "sessions", "import", str(tmp_path / "bad.json"), "--db", str(db)), "bad.json"
    )
    # Into a file that does not exist yet: created, as chat creates one.
    fresh = lionflow(
        tmp_path, "sessions", "import", str(tmp_path / "n.json"), "--db", str(tmp_path / "new.db")
    )
    assert fresh.returncode == 0, fresh.stderr


def test_chat_a_turn_that_cannot_be_stored_says_so_on_a_line_of_its_own(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    _store_session(tmp_path, db, "s", "first")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the file: the turn's write times out
    env = {**_env(tmp_path), "TERM": "dumb"}
    child = pexpect.spawn(
        CHAT[0], [*CHAT[1:], "--db", str(db), "--session", "s"], env=env, encoding="utf-8", timeout=120
    )
    try:
        child.expect_exact("> ")
        child.sendline("hello")
        child.expect_exact("lionflow: ")
        before_error = child.before or ""
        child.expect_exact("> ")
        holder.rollback()
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        holder.close()
    assert before_error.endswith("\n"), f"the error is glued to the reply: {before_error[-60:]!r}"


FAILING_FLOW = """
from lionflow.operations import Builder
from lionflow.testing import ScriptedModel


def explode(messages):
    raise ValueError("the model exploded\\x1b[31m\\nover two lines")


def build(session):
    session.services.register(ScriptedModel(name="ok", responses=lambda messages: "fine", delay=0.05))
    session.services.register(ScriptedModel(name="bad", responses=explode))
    builder = Builder(session=session)
    builder.communicate("go", imodel="ok", name="good")
    builder.communicate("go", imodel="bad", name="broken")
    return builder
"""


def test_run_a_failed_operation_is_one_line_on_stderr_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "failing.py"
    path.write_text(FAILING_FLOW)
    for args in (("--on-error", "continue"), ("--on-error", "continue", "--json"), ("--json",), ()):
        result = lionflow(tmp_path, "run", str(path), *args)
        _one_line_error(result, "broken", "ValueError", "the model exploded")
        assert "\x1b" not in result.stderr
        if "--json" in args:  # every line of stdout is JSON, the failure among them
            events = [json.loads(line) for line in result.stdout.splitlines()]
            assert [e["operation"] for e in events if e["event"] == "failed"] == ["broken"]
        if "continue" in args:
            assert "fine" in result.stdout


PROVIDER_ERROR = {"error": {"message": "quota gone\x1b[31m\nsecond line\x07"}}


def test_a_provider_error_with_escapes_is_one_printable_line(tmp_path: Path) -> None:
    # The server's text in an error: never raw on the terminal, never over two lines.
    with LoopbackServer(default=lambda received: Reply.json(400, PROVIDER_ERROR)) as server:
        model = ["-o", f"base_url={server.url}/v1", "-o", "api_key=test"]
        options = [f"a.{option}" if option != "-o" else option for option in model]
        compared = lionflow(
            tmp_path, "compare", "hi", "-m", "a=openai:gpt-x", "-m", "b=scripted:echo", *options, "--json"
        )
        _one_line_error(compared, "quota gone", "second line")
        chatted = subprocess.run(
            [*CHAT[:-1], "openai:gpt-x", *model, "--db", str(tmp_path / "c.db")],
            input="hi\n",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=_env(tmp_path),
        )
    assert chatted.returncode == 0, chatted.stderr
    for output in (compared.stderr, chatted.stdout + chatted.stderr):
        assert "\x1b" not in output
        assert "\x07" not in output
    (line,) = [line for line in chatted.stdout.splitlines() if "quota gone" in line]
    assert "second line" in line


def test_run_results_show_the_name_in_bold_and_the_text_plain(tmp_path: Path) -> None:
    path = _flow(tmp_path, name="facts")
    env = {**_env(tmp_path), "TERM": "xterm", "COLUMNS": "120"}
    child = pexpect.spawn(sys.executable, ["-m", "lionflow", "run", str(path)], env=env, encoding="utf-8")
    try:
        child.expect(pexpect.EOF, timeout=120)
        final = child.before or ""
    finally:
        child.close()
    assert child.exitstatus == 0
    assert "\x1b[1mfacts\x1b[0m: tea tea" in final  # bold ends with the name
