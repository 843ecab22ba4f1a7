"""`lionflow chat`, driven in a pseudo-terminal as a person would (pexpect), on a scripted model."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pexpect
import pytest

from lionflow.session.messages import AssistantResponseContent
from lionflow.session.session import Session
from lionflow.session.stores import SQLiteStore

PROMPT = "> "
Spawn = Callable[..., pexpect.spawn]
REPLY = 'This is a scripted reply to "{}". It streams in small chunks, exactly like a real model.'


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    # TERM=dumb: no bracketed-paste escapes from readline; XDG paths: nothing lands in the real home.
    env.update(TERM="dumb", XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    return env


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[Spawn]:
    """Start `lionflow chat` with the given arguments (and --db in tmp_path); closed afterwards."""
    children: list[pexpect.spawn] = []

    def spawn(*args: str) -> pexpect.spawn:
        argv = ["-m", "lionflow", "chat", "--db", str(tmp_path / "chat.db"), *args]
        child = pexpect.spawn(sys.executable, argv, env=_env(tmp_path), encoding="utf-8", timeout=30)
        children.append(child)
        return child

    yield spawn
    for child in children:
        child.close(force=True)


def _stored_answers(db: Path, session_id: str, branch: str) -> list[AssistantResponseContent]:
    async def load() -> list[AssistantResponseContent]:
        async with SQLiteStore(db) as store:
            session = await Session.load(store, session_id)
        messages = session.get_branch(branch).messages
        return [m.content for m in messages if isinstance(m.content, AssistantResponseContent)]

    return anyio.run(load)


def _say(child: pexpect.spawn, line: str) -> None:
    """Type a line at the prompt, once it shows, as a person would."""
    child.expect_exact(PROMPT)
    child.sendline(line)


def _finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    status = child.exitstatus
    assert isinstance(status, int), f"ended by a signal: {child.signalstatus}"
    return status


def test_two_turns_stream_and_persist(chat: Spawn, tmp_path: Path) -> None:
    child = chat("--model", "scripted:echo", "--session", "s1", "--system", "Be brief.")
    child.expect_exact("[new session s1: resume it with  lionflow chat --session s1]")
    _say(child, "hello")
    child.expect_exact(REPLY.format("hello"))
    _say(child, "and again")
    child.expect_exact(REPLY.format("and again"))
    _say(child, "/quit")
    assert _finish(child) == 0
    answers = _stored_answers(tmp_path / "chat.db", "s1", "main")
    assert [a.assistant_response for a in answers] == [REPLY.format("hello"), REPLY.format("and again")]
    assert not any(a.incomplete for a in answers)


def test_fork_switch_branches_history(chat: Spawn, tmp_path: Path) -> None:
    child = chat("--model", "scripted:echo", "--session", "s1")
    _say(child, "first")
    child.expect_exact(REPLY.format("first"))
    _say(child, "/fork idea")
    child.expect_exact("[forked: now on branch idea]")
    _say(child, "on the fork")
    child.expect_exact(REPLY.format("on the fork"))
    _say(child, "/branches")
    child.expect_exact("  main (2 messages)")
    child.expect_exact("* idea (4 messages)")
    _say(child, "/switch main")
    child.expect_exact("[now on branch main, 2 messages]")
    _say(child, "/history")
    child.expect_exact("[branch main]")
    child.expect_exact("you: first")
    _say(child, "/switch nowhere")
    assert "on the fork" not in child.before  # the rest of main's history, up to the prompt
    child.expect_exact("lionflow: no branch named 'nowhere' in this session; branches: main, idea")
    _say(child, "/help")
    child.expect_exact("/fork [NAME]")
    child.expect_exact(PROMPT)
    child.sendeof()  # Ctrl-D leaves as /quit does
    assert _finish(child) == 0
    fork = _stored_answers(tmp_path / "chat.db", "s1", "idea")
    assert [a.assistant_response for a in fork] == [REPLY.format("first"), REPLY.format("on the fork")]


def test_resume_in_a_new_process(chat: Spawn) -> None:
    first = chat("--model", "scripted:echo", "--session", "notes")
    _say(first, "remember this")
    first.expect_exact(REPLY.format("remember this"))
    _say(first, "/fork side")
    _say(first, "on the side")
    first.expect_exact(REPLY.format("on the side"))
    _say(first, "/quit")
    assert _finish(first) == 0

    again = chat("--session", "notes")  # no --model: the one the session last used
    again.expect_exact("[resumed session notes, branch side: 4 messages; see /history]")
    again.expect_exact("[model: scripted:echo, as last time]")
    _say(again, "/history")
    again.expect_exact("you: remember this")
    again.expect_exact("you: on the side")
    _say(again, "one more")
    again.expect_exact(REPLY.format("one more"))
    _say(again, "/quit")
    assert _finish(again) == 0


def test_ctrl_c_stops_the_reply_and_keeps_it_incomplete(chat: Spawn, tmp_path: Path) -> None:
    # 0.5 s before each 4-character chunk: the whole reply would take about 12 s.
    child = chat("--model", "scripted:echo", "-o", "delay=0.5", "--session", "s1")
    _say(child, "slow")
    child.expect_exact("This is a ")  # the first chunks have streamed
    child.sendintr()
    child.expect_exact("[stopped: kept as an incomplete answer]")
    # what the terminal showed, less the echoed ^C and the space before the note
    shown = ("This is a " + child.before).replace("^C", "").removesuffix(" ")
    _say(child, "/history")  # the prompt is back: the chat goes on
    child.expect_exact("[incomplete]")
    _say(child, "/quit")
    assert _finish(child) == 0
    (answer,) = _stored_answers(tmp_path / "chat.db", "s1", "main")
    assert answer.incomplete
    assert answer.finish_reason == "cancelled"
    text = answer.assistant_response or ""
    assert text.startswith("This is a ")
    assert REPLY.format("slow").startswith(text)
    assert text != REPLY.format("slow")
    assert shown == text  # what was shown is what was kept


def test_ctrl_c_at_the_prompt_exits_cleanly(chat: Spawn) -> None:
    child = chat("--model", "scripted:echo")
    child.expect_exact(PROMPT)
    child.sendintr()
    assert _finish(child) == 0
    assert "Traceback" not in (child.before or "")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "lionflow", "chat", *args]
    return subprocess.run(argv, env=_env(tmp_path), capture_output=True, text=True, timeout=60, check=False)


def test_help_shows_an_example(tmp_path: Path) -> None:
    result = _run(tmp_path, "--help")
    assert result.returncode == 0
    assert "lionflow chat --model openai:gpt-4o-mini --session ideas" in result.stdout
    assert "~/.local/share/lionflow/lionflow.db" in result.stdout


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    result = _run(tmp_path, "--no-such-flag")
    assert result.returncode == 2
    assert "error: unrecognized arguments: --no-such-flag" in result.stderr
    result = _run(tmp_path, "-o", "no-equals-sign")
    assert result.returncode == 2
    assert "expected KEY=VALUE" in result.stderr


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("nope:model", "lionflow: unknown provider 'nope'; known providers: "),
        ("openai", "lionflow: model 'openai': expected PROVIDER:MODEL, e.g. openai:gpt-4o-mini"),
    ],
)
def test_a_bad_model_says_what_to_do(tmp_path: Path, model: str, message: str) -> None:
    result = _run(tmp_path, "--db", str(tmp_path / "chat.db"), "--model", model)
    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1  # one line, no traceback


def test_a_missing_api_key_says_which_variable(tmp_path: Path) -> None:
    env = {key: value for key, value in _env(tmp_path).items() if key != "OPENAI_API_KEY"}
    argv = [sys.executable, "-m", "lionflow", "chat", "--model", "openai:gpt-4o-mini"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "set OPENAI_API_KEY" in result.stderr
    assert result.stderr.count("\n") == 1


def test_an_unreadable_db_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "not-a-db.db"
    db.write_text("these are not the bytes of a database\n" * 100)
    result = _run(tmp_path, "--db", str(db), "--model", "scripted:echo")
    assert result.returncode == 1
    assert result.stderr.startswith("lionflow: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_without_model_the_embedded_default_answers_offline(chat: Spawn, tmp_path: Path) -> None:
    child = chat("--max-tokens", "8", "--session", "local")
    child.timeout = 180  # loading torch and building the tiny model take a while on a small machine
    # the model it used, said plainly: the cached one, or the tiny random one (saying its text is random)
    child.expect(r"\[model: (local model .* on the CPU|a tiny random-weight Llama.*RANDOM)")
    _say(child, "hello")
    _say(child, "/quit")
    assert _finish(child) == 0
    (answer,) = _stored_answers(tmp_path / "chat.db", "local", "main")
    assert answer.provider == "transformers"
    assert not answer.incomplete
