"""The package as a user meets it: the import, the public names, the examples and the demo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lionflow

ROOT = Path(__file__).resolve().parent.parent
SDKS = ["openai", "anthropic", "groq", "google.genai", "transformers", "torch", "tokenizers", "xgrammar"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )


def test_import_works_with_no_provider_sdk_installed() -> None:
    # A meta-path finder that refuses every SDK makes this interpreter one where none is installed.
    script = f"""
import sys

class NoSDK:
    def find_spec(self, name, path=None, target=None):
        if any(name == s or name.startswith(s + ".") for s in {SDKS!r}):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NoSDK())
import lionflow
from lionflow import *
from lionflow.testing import ScriptedModel
import lionflow.operations, lionflow.structured, lionflow.cli
loaded = sorted(m for m in sys.modules if any(m == s or m.startswith(s + ".") for s in {SDKS!r}))
assert not loaded, loaded
print("ok", lionflow.__version__)
"""
    result = _run("-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")


def _isort_key(name: str) -> tuple[int, str]:
    # constants, then classes, then functions: the order `ruff --fix` keeps __all__ in
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


def test_public_names_are_sorted_and_all_exported() -> None:
    assert lionflow.__all__ == sorted(lionflow.__all__, key=_isort_key)
    for name in lionflow.__all__:
        assert hasattr(lionflow, name), name
    exported = {name for name in dir(lionflow) if not name.startswith("_")}
    submodules = {"services", "session", "testing", "operations", "structured", "cli"}
    assert exported - submodules == set(lionflow.__all__)


def test_seed_example_one_streams_the_reply() -> None:
    result = _run(str(ROOT / "docs/examples/basic_streaming.py"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Assistant: This is a scripted reply to ")
    assert '"Write a short story about a robot learning to paint"' in result.stdout
    assert result.stdout.endswith("\n")


def test_cleanup_example_runs() -> None:
    result = _run(str(ROOT / "docs/examples/guaranteed_cleanup.py"))
    assert result.returncode == 0, result.stderr
    assert "incomplete=True finish_reason=cancelled" in result.stdout


def test_demo_streams_text_to_the_terminal() -> None:
    result = _run("-m", "lionflow", "demo", "--delay", "0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("Assistant: A robot named ARU-7")
    assert "finish_reason=stop" in result.stdout


def test_cli_reports_usage_errors() -> None:
    result = _run("-m", "lionflow", "nonsense")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
