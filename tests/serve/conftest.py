"""A real server for the serving tests: uvicorn on 127.0.0.1 in a thread of its own, so that the
official clients (and lionflow's own adapters) reach `create_app()` over a socket."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, Page

from lionflow.session import SQLiteStore
from lionflow.testing import ScriptedModel


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve `app` until the block ends; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def serve() -> Iterator[Callable[[FastAPI], str]]:
    """``serve(app)``: the base URL of `app` served for the rest of the test."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(serving(app))


def echo_model(**options: Any) -> ScriptedModel:
    """A scripted model named ``echo`` that quotes the last user message (``re: <it>``): what a
    continued conversation reached the model with shows in the answer."""
    return ScriptedModel(name="echo", responses=lambda messages: f"re: {messages[-1]['content']}", **options)


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    """An SQLite store in the test's folder (the test closes it)."""
    return SQLiteStore(tmp_path / "serve.db")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium for the playground tests, one per test module."""
    from tests.serve.playground import chromium

    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page (its own browsing context: nothing kept from another test)."""
    from tests.serve.playground import fresh_page

    with fresh_page(browser) as opened:
        yield opened


async def hang_up_mid_stream(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], *, events: int = 5
) -> str:
    """POST `body` (a streamed chat completion) and hang up after `events` events: the completion's id."""
    async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as reply:
        seen = b""
        async for piece in reply.aiter_raw():
            seen += piece
            if seen.count(b"data: ") >= events:
                break
    return seen.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode()
