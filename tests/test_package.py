"""The package as a user meets it: the import, the public names, the examples and the demo."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import lionflow

ROOT = Path(__file__).resolve().parent.parent
SDKS = ["openai", "anthropic", "groq", "google.genai", "transformers", "torch", "tokenizers", "xgrammar"]
SDKS += ["psycopg", "psycopg_pool"]  # what PostgresStore needs
SDKS += ["ray"]  # what RayExecutor needs


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
        env=None if env is None else os.environ | env,
    )


def test_import_works_with_no_provider_sdk_installed_and_providers_name_their_extra() -> None:
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
for provider, extra in [("openai", "openai"), ("anthropic", "anthropic"), ("groq", "groq"),
                        ("gemini", "gemini"), ("transformers", "transformers")]:
    try:
        lionflow.iModel(provider=provider, model="m", api_key="k")
    except lionflow.MissingDependency as error:
        assert f'pip install "lionflow[{{extra}}]"' in str(error), error
    else:
        raise AssertionError(f"{{provider}} did not report its missing SDK")
try:
    lionflow.PostgresStore("host=127.0.0.1")
except lionflow.MissingDependency as error:
    assert 'pip install "lionflow[postgres]"' in str(error), error
else:
    raise AssertionError("PostgresStore did not report its missing psycopg")
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
    submodules = {"errors", "services", "session", "testing", "operations", "structured", "serve", "cli"}
    submodules |= {"guards", "streams", "toon"}
    assert exported - submodules == set(lionflow.__all__)


def test_seed_example_one_streams_the_reply() -> None:
    result = _run(str(ROOT / "docs/examples/basic_streaming.py"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Assistant: This is a scripted reply to ")
    assert '"Write a short story about a robot learning to paint"' in result.stdout
    assert result.stdout.endswith("\n")


def test_seed_example_two_records_the_turns() -> None:
    result = _run(str(ROOT / "docs/examples/streaming_with_branch_context.py"))
    assert result.returncode == 0, result.stderr
    assert "User: Can you give me a practical example?\nAssistant: This is a scripted reply" in result.stdout
    # communicate recorded turn 1 (two messages); the seed's manual block added the streamed reply
    assert "[branch 'streaming-chat' holds 3 messages]" in result.stdout


def test_persistent_chat_example_loads_what_it_wrote(tmp_path: Path) -> None:
    result = _run(str(ROOT / "docs/examples/persistent_chat.py"), str(tmp_path / "chat.db"))
    assert result.returncode == 0, result.stderr
    assert ": 7 messages" in result.stdout
    assert "assistant '(reply #3)'" in result.stdout


def test_seed_example_four_streams_two_models_in_parallel() -> None:
    result = _run(str(ROOT / "docs/examples/parallel_streaming.py"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # both started before either completed: the streams overlapped
    assert out.index("[Claude] Starting...") < out.index("[GPT] Complete")
    assert "GPT Response (111 chars)" in out
    assert "Claude Response (111 chars)" in out


def test_seed_example_five_streams_the_workflow() -> None:
    result = _run(str(ROOT / "docs/examples/streaming_workflow.py"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("[research] ") < out.index("[article] ")  # the article waits for the research
    assert '"Wri[article] te a' in out  # chunks stream as they come, each tagged
    assert "Workflow complete!" in out


def test_workflow_examples_run() -> None:
    comparison = _run(str(ROOT / "docs/examples/model_comparison.py"))
    assert comparison.returncode == 0, comparison.stderr
    assert "judge -> Both agree that streaming is about latency." in comparison.stdout
    article = _run(str(ROOT / "docs/examples/research_article.py"))
    assert article.returncode == 0, article.stderr
    assert "words:    12" in article.stdout
    assert '"research": "Exercise: better sleep, steadier mood, a stronger heart."' in article.stdout
    stopped = _run(str(ROOT / "docs/examples/stop_workflow.py"))  # aclose() from another task
    assert stopped.returncode == 0, stopped.stderr
    assert "cancelled: 3 operations" in stopped.stdout
    assert stopped.stdout.count("incomplete=True") == 3


def test_cleanup_example_runs() -> None:
    result = _run(str(ROOT / "docs/examples/guaranteed_cleanup.py"))
    assert result.returncode == 0, result.stderr
    assert "incomplete=True finish_reason=cancelled" in result.stdout


def test_demo_falls_back_to_a_tiny_random_model_and_says_so(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "empty-hub")}
    result = _run("-m", "lionflow", "demo", "--max-tokens", "12", env=env)
    assert result.returncode == 0, result.stderr
    assert "ITS TEXT IS RANDOM" in result.stdout
    assert "Streaming from 2 operations at once: greedy, sampled" in result.stdout
    # both operations ran the real generation code: twelve tokens each
    assert re.search(r"\[greedy\] done: .*tokens in/out \d+/12", result.stdout)
    assert re.search(r"\[sampled\] done: .*tokens in/out \d+/12", result.stdout)
    assert (tmp_path / "lionflow/tiny-llama-v1/config.json").exists()


def test_demo_loads_a_cached_hub_model(tmp_path: Path) -> None:
    # A Hugging Face cache laid out as the Hub client writes it, holding the tiny model as a repo.
    from lionflow.services.providers.transformers.tiny_model import build_tiny_model

    repo = tmp_path / "hub" / "models--lionflow-tests--tiny-chat"
    snapshot = repo / "snapshots" / ("0" * 40)
    build_tiny_model(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = _run(
        "-m", "lionflow", "demo", "--model", "lionflow-tests/tiny-chat", "--max-tokens", "5", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "local model lionflow-tests/tiny-chat, from the Hugging Face cache" in result.stdout
    assert "RANDOM" not in result.stdout
    assert not (tmp_path / "cache" / "lionflow").exists()  # no fallback was built


def test_scripted_demo_streams_text_to_the_terminal() -> None:
    result = _run("-m", "lionflow", "demo", "--scripted", "--delay", "0")
    assert result.returncode == 0, result.stderr
    assert "[full] A robot named ARU-7" in result.stdout
    assert re.search(r"\[brief\] done: .*finish_reason=stop", result.stdout)
    assert re.search(r"\[full\] done: .*finish_reason=stop", result.stdout)


def test_cli_reports_usage_errors() -> None:
    result = _run("-m", "lionflow", "nonsense")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
