"""What the playground tests share: Debian's Chromium driven by Playwright, the app served on
asyncio (uvicorn) or trio (hypercorn), upstream providers on a loopback server whose streams the
test holds at known points, and screenshots kept as test artifacts.

Chromium is the system's (``/usr/bin/chromium``, or ``$LIONFLOW_CHROMIUM``), started headless with
no background networking: this machine reaches only 127.0.0.1. Screenshots go to
``build/test-artifacts/playground/`` (``$LIONFLOW_SCREENSHOTS`` names another folder: the docs'
pictures are taken with ``LIONFLOW_SCREENSHOTS=docs/images``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, sync_playwright

from tests.loopback import Reply, sse
from tests.providers.test_anthropic_messages import body as anthropic_body
from tests.providers.test_anthropic_messages import text_block
from tests.serve.conftest import serving
from tests.serve.test_trio_server import serving_on_trio

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LIONFLOW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# The flags of a browser on a closed network: nothing starts a connection of its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


WAIT_MS = 15_000  # how long an expectation on the page waits before it fails


def needs_chromium() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium: install Debian's chromium (apt-get install chromium), or set LIONFLOW_CHROMIUM",
    )


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright's sync API."""
    assert CHROMIUM is not None, "no Chromium (the tests that need it skip, see needs_chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def fresh_page(browser: Browser) -> Iterator[Page]:
    """A page in a browsing context of its own (its own session storage), 1280x860."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(WAIT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshots() -> Path:
    folder = Path(os.environ.get("LIONFLOW_SCREENSHOTS") or ROOT / "build" / "test-artifacts" / "playground")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def served(app: FastAPI, backend: str) -> Iterator[str]:
    """`app` served on `backend` ("asyncio": uvicorn; "trio": hypercorn's trio worker)."""
    with serving(app) if backend == "asyncio" else serving_on_trio(app) as url:
        yield url


# -- upstream streams, cut into one piece per word so that a hold stops them mid-sentence ---------


def words(text: str) -> list[str]:
    parts = text.split(" ")
    return [part + " " for part in parts[:-1]] + [parts[-1]]


def chat_reply(text: str, *, holds: list[tuple[int, threading.Event]]) -> Reply:
    """An OpenAI Chat Completions stream of `text`, a piece per word: the role, the words, the finish,
    the usage. A hold at index i stops it after i pieces (the role and i - 1 words)."""
    base = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events: list[object] = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": word}) for word in words(text)]
    events.append(chunk({}, "stop"))
    usage = {"prompt_tokens": 9, "completion_tokens": len(words(text)), "total_tokens": 9 + len(words(text))}
    events.append(base | {"choices": [], "usage": usage})
    return Reply(pieces=sse(events), holds=holds)


def messages_reply(text: str, *, holds: list[tuple[int, threading.Event]]) -> Reply:
    """An Anthropic Messages stream of `text`, a piece per word. A hold at index i stops it after the
    message and block starts and i - 2 words."""
    return Reply(
        pieces=anthropic_body(text_block(0, *words(text)), output_tokens=len(words(text))), holds=holds
    )


class Proxy:
    """A TCP relay in front of the server that the test can cut: every connection through it is
    dropped at once (the browser sees a lost connection), and new ones go through again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:  # the server has stopped: the browser's connection is refused with it
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every connection open through the relay, as a lost network would."""
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def stored_json(page: Any, path: str) -> Any:
    """What the page's own fetch() of `path` returns, as JSON (with the tab's key, if any)."""
    return json.loads(
        page.evaluate(
            """async (path) => {
                const key = sessionStorage.getItem("lionflow.apiKey");
                const headers = key ? {Authorization: `Bearer ${key}`} : {};
                return await (await fetch(path, {headers})).text();
            }""",
            path,
        )
    )
