"""``lionflow serve --flow NAME=FILE.py``: a flow file (as `lionflow run` takes it) served at
``POST /v1/flows/NAME/runs``, its events streamed to the end and its turns stored; a ``[flows]``
table in the configuration does the same; a bad spec or file is one line and no server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.serve.test_command import serve_command

pytestmark = pytest.mark.anyio

FLOW = """\
from lionflow.operations import Builder
from topics import DEFAULT  # a neighbour of this file, as `lionflow run` allows

def build(session):
    builder = Builder(session=session)
    topic = session.metadata["inputs"].get("topic", DEFAULT)
    facts = builder.communicate(f"facts about {topic}", imodel="echo", name="facts")
    builder.communicate("a haiku", imodel="echo", context_from=[facts], name="haiku")
    return builder
"""


def _flow_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "topics.py").write_text('DEFAULT = "tea"\n')
    path = folder / "research.py"
    path.write_text(FLOW)
    return path


async def _run(
    http: httpx.AsyncClient, name: str, inputs: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """The events of one run of flow `name`, read to the end of the stream."""
    events: list[tuple[str, dict[str, Any]]] = []
    with anyio.fail_after(30):
        async with http.stream("POST", f"/v1/flows/{name}/runs", json={"inputs": inputs}) as reply:
            assert reply.status_code == 200, await reply.aread()
            event = ""
            async for line in reply.aiter_lines():
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: ") and event:
                    events.append((event, json.loads(line[len("data: ") :])))
                    event = ""
    return events


async def test_a_flow_file_is_served_and_its_run_streams_to_the_end_and_is_stored(tmp_path: Path) -> None:
    flow = _flow_file(tmp_path / "flows")
    db = tmp_path / "serve.db"
    args = ("--model", "echo=scripted:echo", "--flow", f"research={flow}", "--db", str(db))
    with serve_command(*args, cwd=tmp_path) as (_, line):
        assert line.rstrip().endswith("(models: echo; flows: research)")
        base_url = line.split()[3].removesuffix("/v1")
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            assert (await http.get("/v1/flows")).json()["data"] == [{"id": "research", "object": "flow"}]
            events = await _run(http, "research", {"topic": "oolong"})
            names = [name for name, _ in events]
            assert names[0] == "run.started"
            assert names[-1] == "run.completed"
            completed = {data["name"]: data for name, data in events if name == "operation.completed"}
            assert set(completed) == {"facts", "haiku"}
            assert any(name == "operation.chunk" for name, _ in events)
            ended = events[-1][1]
            assert sorted(ended["completed"]) == sorted(data["operation"] for data in completed.values())

            # The run is a session of the server's store: its turns, as the sessions panel reads them.
            session = (await http.get(f"/v1/sessions/{ended['session_id']}")).json()
            assert session["metadata"]["flow"] == "research"
            asked = [
                message["text"]
                for branch in session["branches"]
                for message in branch["messages"]
                if message["role"] == "user"
            ]
            assert any("facts about oolong" in text for text in asked)

            # Each run builds the flow anew (inputs and all): the default from the file's neighbour.
            again = await _run(http, "research", {})
            assert again[-1][0] == "run.completed"
            session = (await http.get(f"/v1/sessions/{again[-1][1]['session_id']}")).json()
            texts = [m["text"] for branch in session["branches"] for m in branch["messages"]]
            assert any("facts about tea" in text for text in texts)


async def test_the_flows_table_of_the_configuration_is_relative_to_its_file(tmp_path: Path) -> None:
    _flow_file(tmp_path / "conf" / "flows")
    config = tmp_path / "conf" / "serve.toml"
    config.write_text(
        '[[models]]\nname = "echo"\nprovider = "scripted"\nmodel = "echo"\n\n'
        '[flows]\nresearch = "flows/research.py"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with serve_command("--config", str(config), cwd=elsewhere) as (_, line):
        base_url = line.split()[3].removesuffix("/v1")
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            events = await _run(http, "research", {})
    assert events[-1][0] == "run.completed"


BAD_FILES = {
    "missing.py": None,
    "broken.py": "import no_such_module_here\n",
    "nobuild.py": "x = 1\n",
}


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("research", "expected NAME=FILE.py"),
        ("=research.py", "expected NAME=FILE.py"),
        ("a/b=research.py", "expected NAME=FILE.py"),
        ("x=missing.py", "missing.py: no such file"),
        ("x=broken.py", "cannot import it: ModuleNotFoundError"),
        ("x=nobuild.py", "defines no build(session)"),
    ],
)
def test_a_bad_flow_spec_or_file_is_one_line_and_no_server(tmp_path: Path, spec: str, said: str) -> None:
    _flow_file(tmp_path)
    for name, text in BAD_FILES.items():
        if text is not None:
            (tmp_path / name).write_text(text)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lionflow",
            "serve",
            "--port",
            "0",
            "--model",
            "e=scripted:echo",
            "--flow",
            spec,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stdout == ""  # nothing served
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lionflow: ")
    assert said in lines[0]


def test_a_bad_flows_table_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("[flows]\nresearch = 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "lionflow", "serve", "--port", "0", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"lionflow: {config}: [flows] research = 3: expected a name without '/' = \"file.py\""
    ]
