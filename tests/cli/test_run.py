"""`lionflow run FILE.py`, driven as a person or a script would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect

FLOW = """
from lionflow.operations import Builder
from lionflow.testing import ScriptedModel


def build(session):
    session.services.register(
        ScriptedModel(name="m", responses=lambda messages: "tea " * 12, chunk_size=4, delay=0.02)
    )
    builder = Builder(session=session)
    facts = builder.communicate("List 3 facts about tea", imodel="m", name="facts")
    builder.communicate("Write a haiku", imodel="m", context_from=[facts], name="haiku")
    return builder
"""


def lionflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lionflow", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_json_lines_carry_every_event_in_order(tmp_path: Path) -> None:
    flow_file = tmp_path / "tea.py"
    flow_file.write_text(FLOW)
    result = lionflow("run", str(flow_file), "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [(event["operation"], event["event"]) for event in events if event["event"] != "chunk"]
    assert kinds == [
        ("facts", "started"),
        ("facts", "completed"),
        ("haiku", "started"),
        ("haiku", "completed"),
    ]
    chunks = [event for event in events if event["event"] == "chunk" and event["type"] == "text"]
    facts_text = "".join(event["data"] for event in chunks if event["id"] == events[0]["id"])
    assert facts_text == "tea " * 12
    completed = [event for event in events if event["event"] == "completed"]
    assert completed[0]["result"]["text"] == "tea " * 12


def test_the_live_view_shows_each_operation_then_the_results(tmp_path: Path) -> None:
    flow_file = tmp_path / "tea.py"
    flow_file.write_text(FLOW)
    env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"}
    child = pexpect.spawn(
        sys.executable, ["-m", "lionflow", "run", str(flow_file)], env=env, encoding="utf-8"
    )
    try:
        child.expect("running", timeout=60)  # a row is shown while its operation streams
        child.expect(pexpect.EOF, timeout=60)
        final = child.before or ""
    finally:
        child.close()
    assert child.exitstatus == 0
    rows = [line for line in final.splitlines() if line.startswith("│ ")]
    assert any("facts" in row and "completed" in row and "│ 12 " in row for row in rows)
    assert any("haiku" in row and "completed" in row for row in rows)
    plain = final.replace("\x1b[1m", "").replace("\x1b[0m", "")
    assert f"facts: {'tea ' * 12}" in plain  # then the results
    assert f"haiku: {'tea ' * 12}" in plain


def test_a_file_without_build_is_one_line_and_exit_1(tmp_path: Path) -> None:
    flow_file = tmp_path / "empty.py"
    flow_file.write_text("x = 1\n")
    result = lionflow("run", str(flow_file))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"lionflow: {flow_file}: defines no build(session) function returning a Builder"
    )
    missing = lionflow("run", str(tmp_path / "nope.py"))
    assert missing.returncode == 1
    assert "no such file" in missing.stderr
    assert "Traceback" not in missing.stderr + result.stderr


def test_bad_usage_exits_2_and_help_shows_an_example() -> None:
    assert lionflow("run").returncode == 2
    help_text = lionflow("run", "--help")
    assert help_text.returncode == 0
    assert "def build(session):" in help_text.stdout
