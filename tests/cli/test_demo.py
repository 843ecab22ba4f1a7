"""`lionflow demo --download`, run as a user runs it, against a loopback Hugging Face Hub.

The Hub here is a real HTTP server on 127.0.0.1 that speaks the part of the Hub's API the Hub
client's own `snapshot_download` uses (the revision's info, the file tree, HEAD and GET of each
file), serving a tiny random-weight model under the default model's repo id. HF_ENDPOINT points
the client at it and HF_HOME keeps its cache in a temporary folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from lionflow.cli._demo import DEFAULT_LOCAL_MODEL

ROOT = Path(__file__).resolve().parents[2]
REPO = DEFAULT_LOCAL_MODEL
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RESOLVE = f"/{REPO}/resolve/{COMMIT}/"  # + a file's path in the repo: the file itself
# Files a real model repo also holds that a transformers load does not need: never fetched.
EXTRA_FILES = {"README.md": b"# a model card\n", "onnx/model.onnx": b"\0" * 4096}


@dataclass
class FakeHub:
    """The files it serves (path in the repo -> bytes) and every (method, path) it was asked for."""

    files: dict[str, bytes]
    url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str], *, head: bool = False) -> None:
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, payload: object) -> None:
            self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

        def _route(self, *, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path))
            if path in (f"/api/models/{REPO}/revision/main", f"/api/models/{REPO}"):
                self._json({"id": REPO, "sha": COMMIT, "siblings": [{"rfilename": f} for f in hub.files]})
            elif path == f"/api/models/{REPO}/tree/{COMMIT}":
                tree = [
                    {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for name, data in hub.files.items()
                ]
                self._json(tree)
            elif path.startswith(RESOLVE) and path.removeprefix(RESOLVE) in hub.files:
                data = hub.files[path.removeprefix(RESOLVE)]
                headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
                self._send(200, data, {"Content-Type": "application/octet-stream", **headers}, head=head)
            else:
                body = json.dumps({"error": "Entry not found"}).encode()
                self._send(404, body, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, head=head)

        def do_GET(self) -> None:
            self._route(head=False)

        def do_HEAD(self) -> None:
            self._route(head=True)

    return Handler


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    from lionflow.services.providers.transformers.tiny_model import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("tiny-repo"))
    files = {path.name: path.read_bytes() for path in sorted(folder.iterdir())}
    return files | EXTRA_FILES


@pytest.fixture
def hub(tiny_repo: dict[str, bytes]) -> Iterator[FakeHub]:
    fake = FakeHub(files=tiny_repo)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # Nothing of the caller's Hub or proxy settings leaks in: the cache and the endpoint are the test's.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))
        and name.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(HF_HOME=str(tmp_path / "hf"), XDG_CACHE_HOME=str(tmp_path / "cache"), **extra)
    return env


def lionflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lionflow", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
        env=env,
    )


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening, closed: a connection is refused
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_download_fetches_the_model_once_with_progress_and_the_demo_runs_on_it(
    hub: FakeHub, tmp_path: Path
) -> None:
    env = _env(tmp_path, HF_ENDPOINT=hub.url)
    first = lionflow(env, "--download", "--max-tokens", "4")
    assert first.returncode == 0, first.stderr
    assert f"[Downloading {REPO} (about 270 MB) from {hub.url}" in first.stdout
    assert "Fetching 6 files" in first.stderr  # the Hub client's progress bar, shown though piped
    assert "100%" in first.stderr
    assert "Loading weights" not in first.stderr  # the bars end with the download
    # the snapshot is in the normal cache, with only what a load needs
    snapshot = tmp_path / "hf/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots" / COMMIT
    fetched = {path.name for path in snapshot.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= fetched
    assert (snapshot / "model.safetensors").read_bytes() == hub.files["model.safetensors"]
    assert not {path for _, path in hub.requests if "README" in path or "onnx" in path}
    # the demo ran on it: the cached model, real generation, not the random fallback
    assert f"local model {REPO}, from the Hugging Face cache" in first.stdout
    assert re.search(r"\[greedy\] done: .*tokens in/out \d+/4", first.stdout)
    assert "RANDOM" not in first.stdout.upper()
    assert "lionflow demo --download" not in first.stdout  # no hint to fetch what it has
    assert not (tmp_path / "cache/lionflow").exists()  # no tiny model was built

    hub.requests.clear()
    second = lionflow(env, "--download", "--max-tokens", "2")
    assert second.returncode == 0, second.stderr
    assert f"[{REPO} is already in the Hugging Face cache" in second.stdout
    assert "Downloading" not in second.stdout
    assert "Fetching" not in second.stderr
    assert "Loading weights" not in second.stderr
    assert hub.requests == []  # not a file, not even the revision: it asked the Hub nothing
    assert f"local model {REPO}, from the Hugging Face cache" in second.stdout

    plain = lionflow(env, "--max-tokens", "2")  # later, the plain demo finds it offline
    assert plain.returncode == 0, plain.stderr
    assert f"local model {REPO}, from the Hugging Face cache" in plain.stdout
    assert hub.requests == []


def test_download_with_no_network_says_so_in_one_line(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    result = lionflow(_env(tmp_path, HF_ENDPOINT=endpoint), "--download")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"lionflow: could not download {REPO}: $HF_ENDPOINT ({endpoint}) ")
    assert "cannot be reached from this machine" in result.stderr
    assert "on a machine with network access, or copy the folder" in result.stderr
    assert result.stdout == ""  # nothing announced, nothing run
    assert not (tmp_path / "cache/lionflow").exists()


def test_download_refused_when_hf_hub_offline_is_set(hub: FakeHub, tmp_path: Path) -> None:
    result = lionflow(_env(tmp_path, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="1"), "--download")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        f"lionflow: could not download {REPO}: HF_HUB_OFFLINE=1 is set, which forbids downloads. "
        "Run `HF_HUB_OFFLINE=0 lionflow demo --download` (or unset it) to fetch it.\n"
    )
    assert hub.requests == []


def test_plain_demo_with_random_text_ends_with_how_to_get_real_text(tmp_path: Path) -> None:
    result = lionflow(_env(tmp_path), "--max-tokens", "2")
    assert result.returncode == 0, result.stderr
    assert "ITS TEXT IS RANDOM" in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert "lionflow demo --download" in last
    assert "on a machine with network access" in last


def test_help_shows_the_download_example() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lionflow", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\s+lionflow demo --download\s+# ", result.stdout, re.MULTILINE)
