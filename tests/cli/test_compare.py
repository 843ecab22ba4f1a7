"""`lionflow compare`, driven as a person (in a pseudo-terminal) or a script (--json) would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pexpect

from lionflow.services.response import Response
from lionflow.testing import ScriptedModel

PROMPT = "Name a colour"
# Three scripted models, each with a reply of its own and a pace of its own: a ends first.
REPLIES = {"a": "alpha " * 10, "b": "bravo " * 10, "c": "charlie " * 10}
DELAYS = {"a": 0.05, "b": 0.08, "c": 0.1}


def _args(*, delays: dict[str, float] = DELAYS) -> list[str]:
    args = ["compare", PROMPT]
    for name, reply in REPLIES.items():
        args += ["-m", f"{name}=scripted:echo", "-o", f"{name}.responses={json.dumps([reply])}"]
        args += ["-o", f"{name}.chunk_size=3", "-o", f"{name}.delay={delays[name]}"]
    return args


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "150", "LINES": "50", "TERM": "xterm"}
    env.update(XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("OPENAI_API_KEY", None)
    return env


def lionflow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lionflow", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_env(tmp_path),
    )


def _expected() -> dict[str, Response]:
    """What each scripted model's Response says, from the same model run here."""

    async def run() -> dict[str, Response]:
        return {
            name: await ScriptedModel(responses=[reply], model="echo", chunk_size=3).invoke(PROMPT)
            for name, reply in REPLIES.items()
        }

    return anyio.run(run)


def _spawn(tmp_path: Path, *args: str) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "lionflow", *args],
        env=_env(tmp_path),
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 150),
    )


def test_panes_all_stream_before_any_finishes_then_the_table_matches(tmp_path: Path) -> None:
    child = _spawn(tmp_path, *_args())
    try:
        child.expect("done · ")  # the first pane to finish
        before_first_done = child.before
        child.expect(pexpect.EOF)
        rest = child.before
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, rest
    # Each pane had shown part of its reply, and was still streaming, before any pane finished.
    for word in ("alpha", "bravo", "charlie"):
        assert word in before_first_done
    assert before_first_done.count("streaming · ") >= 3
    # The table's numbers are the Responses'.
    rows = {
        m.group(1): (int(m.group(2)), int(m.group(3)), m.group(4))
        for m in re.finditer(r"│ ([abc])\s+│\s+(\d+) │\s+(\d+) │.*?│ (\w+)\s+│", rest)
    }
    expected = _expected()
    assert rows == {
        name: (len(response.text), response.chunk_count, response.finish_reason)
        for name, response in expected.items()
    }


def test_json_lines_carry_what_each_response_says(tmp_path: Path) -> None:
    result = lionflow(tmp_path, *_args(delays=dict.fromkeys(REPLIES, 0.0)), "--json")
    assert result.returncode == 0, result.stderr
    lines: list[dict[str, Any]] = [json.loads(line) for line in result.stdout.splitlines()]
    expected = _expected()
    assert [line["name"] for line in lines] == ["a", "b", "c"]
    for line in lines:
        response = expected[line["name"]]
        assert line["text"] == response.text == REPLIES[line["name"]]
        assert line["characters"] == len(response.text)
        assert line["chunks"] == response.chunk_count
        assert line["finish_reason"] == response.finish_reason == "stop"
        assert response.usage is not None
        assert (line["input_tokens"], line["output_tokens"]) == (
            response.usage.input_tokens,
            response.usage.output_tokens,
        )
        assert line["incomplete"] is False
        assert line["error"] is None
        assert line["duration"] >= 0
        assert line["time_to_first_chunk"] is not None


def test_ctrl_c_stops_every_stream_and_keeps_the_partial_replies(tmp_path: Path) -> None:
    db = tmp_path / "compare.db"
    child = _spawn(tmp_path, *_args(delays=dict.fromkeys(REPLIES, 0.3)), "--save", "--db", str(db))
    try:
        child.expect("charlie")  # every pane streams by now (all share the pace)
        child.expect("streaming · ")
        child.sendintr()
        child.expect(pexpect.EOF)
        output = child.before
    finally:
        child.close(force=True)
    assert child.exitstatus == 130, output
    assert "INCOMPLETE" in output
    assert "(incomplete)" in output
    assert "Traceback" not in output
    (listed,) = lionflow(tmp_path, "sessions", "list", "--json", "--db", str(db)).stdout.splitlines()
    session_id = json.loads(listed)["id"]
    exported = json.loads(lionflow(tmp_path, "sessions", "export", session_id, "--db", str(db)).stdout)
    answers = [m["content"] for m in exported["messages"] if m["content"]["kind"] == "assistant_response"]
    assert len(answers) == 3
    for answer in answers:
        assert answer["incomplete"] is True
        assert len(answer["assistant_response"]) < len(REPLIES["c"])


def test_bad_usage_exits_2_with_one_line(tmp_path: Path) -> None:
    one = lionflow(tmp_path, "compare", "hi", "-m", "a=scripted:echo")
    seven = lionflow(tmp_path, "compare", "hi", *[f"-m=m{i}=scripted:echo" for i in range(7)])
    malformed = lionflow(tmp_path, "compare", "hi", "-m", "a=scripted", "-m", "b=scripted:echo")
    twice = lionflow(tmp_path, "compare", "hi", "-m", "a=scripted:echo", "-m", "a=scripted:echo")
    stray = lionflow(tmp_path, "compare", "hi", "-m", "a=scripted:x", "-m", "b=scripted:x", "-o", "z.delay=1")
    for result in (one, seven, malformed, twice, stray):
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[-1].startswith("lionflow compare: error: ")
        assert "Traceback" not in result.stderr
    assert "not 1" in one.stderr
    assert "not 7" in seven.stderr
    assert "NAME=PROVIDER:MODEL" in malformed.stderr


def test_expected_errors_are_one_line_not_a_traceback(tmp_path: Path) -> None:
    unknown = lionflow(tmp_path, "compare", "hi", "-m", "a=nope:x", "-m", "b=scripted:echo")
    no_key = lionflow(tmp_path, "compare", "hi", "-m", "a=openai:gpt-4o-mini", "-m", "b=scripted:echo")
    bad_db = lionflow(
        tmp_path, "compare", "hi", "-m", "a=scripted:x", "-m", "b=scripted:x", "--save", "--db", str(tmp_path)
    )
    for result, words in (
        (unknown, "unknown provider 'nope'"),
        (no_key, "OPENAI_API_KEY"),
        (bad_db, "directory"),
    ):
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith("lionflow: ")
        assert words in result.stderr


def test_help_has_an_example(tmp_path: Path) -> None:
    result = lionflow(tmp_path, "compare", "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout
    assert "lionflow compare " in result.stdout
