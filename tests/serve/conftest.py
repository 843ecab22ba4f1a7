"""A real server for the serving tests: uvicorn on 127.0.0.1 in a thread of its own, so that the
official clients (and lionflow's own adapters) reach `create_app()` over a socket."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

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
