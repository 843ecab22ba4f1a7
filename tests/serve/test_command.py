"""``lionflow serve``: with no arguments it serves the demo default (a scripted echo model and the
local model, never downloaded), which the official openai client can stream from."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from lionflow.session import Session, SQLiteStore

pytestmark = pytest.mark.anyio


@contextmanager
def serve_command(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`lionflow serve --port 0 ARGS` in its own process (in `cwd`): the process, and the line it
    printed to say where it serves."""
    with subprocess.Popen(
        [sys.executable, "-m", "lionflow", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | (env or {}),
        cwd=cwd,
    ) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith("lionflow serving on "):
                    yield process, line
                    break
            else:
                assert process.stderr is not None
                pytest.fail(f"lionflow serve did not start: {process.stderr.read()}")
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(20)


@contextmanager
def serve_process(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`lionflow serve ARGS` in its own process: the process, and the base URL it prints."""
    with serve_command(*args, env=env) as (process, line):
        yield process, line.split()[3]


@contextmanager
def running(*args: str, env: dict[str, str]) -> Iterator[str]:
    """`lionflow serve ARGS` in its own process; yields the base URL it prints."""
    with serve_process(*args, env=env) as (_, base_url):
        yield base_url


async def test_serve_with_no_arguments_streams_to_the_official_client(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "empty-hub")}
    with running(env=env) as base_url:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="unused") as client:
            assert [model.id async for model in client.models.list()] == ["echo", "local"]
            for name in ("echo", "local"):
                stream = await client.chat.completions.create(
                    model=name,
                    messages=[{"role": "user", "content": "Say hello"}],
                    stream=True,
                    max_tokens=8,
                    stream_options={"include_usage": True},
                )
                chunks = [chunk async for chunk in stream]
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                assert text, name
                usage = chunks[-1].usage
                assert usage is not None
                assert usage.completion_tokens > 0


async def test_serve_with_a_db_records_answers_that_outlive_the_process(tmp_path: Path) -> None:
    db = tmp_path / "serve.db"
    env = {"XDG_CACHE_HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "empty-hub")}
    with running("--model", "echo=scripted:echo", "--db", str(db), env=env) as base_url:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="unused") as client:
            first = await client.responses.create(model="echo", input="remember me")
    # A new process on the same file: the response is still there, and can be continued.
    with running("--model", "echo=scripted:echo", "--db", str(db), env=env) as base_url:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="unused") as client:
            stored = await client.responses.retrieve(first.id)
            second = await client.responses.create(
                model="echo", input="and now?", previous_response_id=first.id
            )
    assert stored.output_text == first.output_text
    assert second.previous_response_id == first.id
    async with SQLiteStore(db) as store:
        session = await Session.load(store, first.id)
    assert [message.role for message in session.get_branch(first.id).messages] == ["user", "assistant"] * 2


def test_serve_refuses_a_db_it_cannot_open(tmp_path: Path) -> None:
    (tmp_path / "not-a-db").write_text("hello, not sqlite")
    done = subprocess.run(
        [sys.executable, "-m", "lionflow", "serve", "--port", "0", "--db", str(tmp_path / "not-a-db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "not-a-db" in done.stderr


async def test_serve_takes_its_keys_from_the_environment(tmp_path: Path) -> None:
    env = {"SERVE_KEYS": "sk-one, sk-two"}
    with running("--model", "e=scripted:echo", "--api-key-env", "SERVE_KEYS", env=env) as base_url:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-two") as client:
            assert [model.id async for model in client.models.list()] == ["e"]
        async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-three", max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                await client.models.list()


def test_serve_refuses_a_public_address_without_being_told(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lionflow", "serve", "--host", "0.0.0.0", "--model", "e=scripted:echo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "--insecure-public" in result.stderr


def test_serve_rejects_a_malformed_model_spec() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lionflow", "serve", "--model", "gpt-4o-mini"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "NAME=PROVIDER:MODEL" in result.stderr


def test_the_serving_example_runs() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "serve_chat.py"
    result = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Served by lionflow, streamed to openai.\n[7 tokens]\n"


def test_the_clients_example_runs() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "serve_clients.py"
    result = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "anthropic: You said: hello",
        "responses: You said: what was it?",
        "stored turns: 2",
        "resumed after event 3: 10 events in all, the last 'data: [DONE]'",
    ]


def test_serve_prints_the_playground_address_and_it_serves_the_page(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "empty-hub")}
    with serve_process("--model", "echo=scripted:echo", env=env) as (process, base_url):
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("playground: ")
        page_url = line.split()[1]
        assert page_url == base_url.removesuffix("/v1") + "/"
        page = httpx.get(page_url)
        assert page.status_code == 200
        assert "<title>lionflow playground</title>" in page.text
        assert (
            httpx.get(page_url + "playground/playground.js")
            .headers["content-type"]
            .startswith("text/javascript")
        )


@pytest.mark.parametrize("source", ["flag", "config"])
async def test_serve_transport_native_reaches_the_provider_natively(tmp_path: Path, source: str) -> None:
    from tests.loopback import LoopbackServer, Reply, sse
    from tests.providers.test_openai_chat import text_stream

    with LoopbackServer() as upstream:
        upstream.add(Reply(pieces=sse(text_stream("Hello", " from", " upstream"))))
        env = {"OPENAI_BASE_URL": upstream.url + "/v1", "OPENAI_API_KEY": "sk-upstream"}
        if source == "flag":
            args = [
                "--model",
                "gpt=openai:gpt-4o-mini",
                "--model",
                "echo=scripted:echo",
                "--transport",
                "native",
            ]
        else:
            config = tmp_path / "serve.toml"
            config.write_text(
                '[server]\ntransport = "native"\n\n'
                '[[models]]\nname = "gpt"\nprovider = "openai"\nmodel = "gpt-4o-mini"\n\n'
                '[[models]]\nname = "echo"\nprovider = "scripted"\nmodel = "echo"\n'
            )
            args = ["--config", str(config)]
        with serve_command(*args, env=env) as (_, line):
            assert "transport: native" in line
            async with openai.AsyncOpenAI(base_url=line.split()[3], api_key="unused") as client:
                stream = await client.chat.completions.create(
                    model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True
                )
                text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                # The scripted model has no provider to reach: it keeps serving beside the native one.
                echo = await client.chat.completions.create(
                    model="echo", messages=[{"role": "user", "content": "ping"}]
                )
    assert text == "Hello from upstream"
    assert echo.choices[0].message.content
    sent = upstream.requests[0]
    assert sent.headers["user-agent"].startswith("lionflow/")
    assert "native" in sent.headers["user-agent"]
    assert sent.headers["authorization"] == "Bearer sk-upstream"
