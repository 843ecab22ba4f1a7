"""The playground (``GET /`` of the server) in a real headless Chromium, driven as a person would:
pick models, send a prompt, watch the panes fill, stop one, read the stored sessions, run a flow,
lose the connection, give an API key. The models are real providers (the OpenAI and Anthropic
SDKs) reaching a loopback server whose streams the test holds at known points, so every
intermediate state is asserted exactly, not raced. Each state's screenshot is a test artifact.

The app runs on both backends: uvicorn (asyncio) and hypercorn's trio worker.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from playwright.sync_api import Browser, Page, expect

from lionflow import Session, iModel
from lionflow.operations import Builder
from lionflow.serve import create_app
from lionflow.session import SQLiteStore
from lionflow.testing import ScriptedModel
from tests.loopback import LoopbackServer, Received, Reply
from tests.serve.playground import (
    Proxy,
    chat_reply,
    messages_reply,
    needs_chromium,
    screenshots,
    served,
    stored_json,
    words,
)

pytestmark = [needs_chromium(), pytest.mark.parametrize("backend", ["asyncio", "trio"])]

GPT_TEXT = "Green tea is steamed, black tea is fully oxidised, and oolong sits between the two of them."
CLAUDE_TEXT = "Tea comes from one plant, Camellia sinensis, grown on hills across Asia and Africa."


def shot(page: Page, name: str, backend: str) -> None:
    suffix = "" if backend == "asyncio" else f"-{backend}"
    page.screenshot(path=str(screenshots() / f"playground-{name}{suffix}.png"))


def upstream_models(upstream: LoopbackServer) -> list[iModel]:
    return [
        iModel(provider="openai", model="gpt-test", name="gpt", base_url=upstream.url + "/v1", api_key="up"),
        iModel(provider="anthropic", model="claude-test", name="claude", base_url=upstream.url, api_key="up"),
    ]


def by_path(gpt: Reply, claude: Reply) -> Any:
    return lambda received: gpt if received.path.endswith("/chat/completions") else claude


def request_to(upstream: LoopbackServer, path: str) -> Received:
    return next(received for received in upstream.requests if received.path.endswith(path))


def pane(page: Page, model: str) -> Any:
    return page.locator(f'.pane[data-model="{model}"]')


def reply_of(page: Page, model: str) -> Any:
    return pane(page, model).locator(".turn.assistant").last


def test_two_models_stream_side_by_side_one_stopped_the_other_finishing(
    backend: str, page: Page, tmp_path: Path
) -> None:
    gpt_words, claude_words = words(GPT_TEXT), words(CLAUDE_TEXT)
    first, second, claude_hold = threading.Event(), threading.Event(), threading.Event()
    gpt = chat_reply(GPT_TEXT, holds=[(4, first), (8, second)])  # the role, then 3 words; then 7
    claude = messages_reply(CLAUDE_TEXT, holds=[(5, claude_hold)])  # 2 starts, then 3 words
    store = SQLiteStore(tmp_path / "serve.db")
    with LoopbackServer() as upstream:
        upstream.add(by_path(gpt, claude), by_path(gpt, claude))
        app = create_app([*upstream_models(upstream), ScriptedModel(name="echo")], store=store)
        try:
            with served(app, backend) as url:
                page.goto(url + "/")
                expect(page.locator("#models input")).to_have_count(3)
                # The first two served models are chosen; a pane each.
                expect(page.locator(".pane")).to_have_count(2)
                page.fill("#prompt", "Tell me about tea")
                page.click("#send")

                # Both panes show the words their stream has sent so far, and are still streaming.
                expect(reply_of(page, "gpt")).to_have_text("".join(gpt_words[:3]))
                expect(reply_of(page, "claude")).to_have_text("".join(claude_words[:3]))
                for model in ("gpt", "claude"):
                    expect(pane(page, model)).to_have_attribute("data-state", "streaming")
                    expect(pane(page, model).locator(".chunks")).to_have_text("3")
                    expect(pane(page, model).locator(".ttft")).to_have_text(_milliseconds())
                    expect(pane(page, model).locator(".stop")).to_be_enabled()
                shot(page, "1-streaming", backend)

                # One stream moves on while the other stays where it was: the panes are independent.
                first.set()
                expect(reply_of(page, "gpt")).to_have_text("".join(gpt_words[:7]))
                expect(reply_of(page, "claude")).to_have_text("".join(claude_words[:3]))
                expect(pane(page, "gpt").locator(".tps")).to_have_text(_rate(estimated=True))

                # Stop closes claude's stream: the server cancels its upstream call (the provider
                # sees the client leave) while gpt's goes on.
                pane(page, "claude").locator(".stop").click()
                expect(pane(page, "claude")).to_have_attribute("data-state", "stopped")
                assert request_to(upstream, "/v1/messages").disconnected.wait(10)
                expect(pane(page, "gpt")).to_have_attribute("data-state", "streaming")
                shot(page, "2-stopped", backend)

                second.set()
                expect(reply_of(page, "gpt")).to_have_text(GPT_TEXT)
                expect(pane(page, "gpt").locator(".status")).to_have_text("done (stop)")
                expect(pane(page, "gpt").locator(".tokens")).to_have_text(str(len(gpt_words)))
                expect(pane(page, "gpt").locator(".tps")).to_have_text(_rate(estimated=False))
                expect(reply_of(page, "claude")).to_have_text("".join(claude_words[:3]))
                expect(reply_of(page, "claude")).to_have_class("turn assistant incomplete")
                assert not request_to(upstream, "/v1/chat/completions").disconnected.is_set()
                shot(page, "3-done", backend)

                # The sessions panel: each answer a stored session, claude's turn marked incomplete.
                page.click("#tab-sessions")
                expect(page.locator("#session-list button")).to_have_count(2)
                texts = {}
                for index in range(2):
                    button = page.locator("#session-list button").nth(index)
                    button.click()
                    # Read the panel once it shows this session, not the one shown before it.
                    shown = button.get_attribute("data-session")
                    expect(page.locator("#session-detail")).to_have_attribute("data-session", shown or "?")
                    turns = page.locator("#session-detail .turn")
                    expect(turns).to_have_count(2)
                    expect(turns.first).to_have_text("user" + "Tell me about tea")
                    assistant = turns.last
                    texts[assistant.locator(".text").text_content()] = assistant.get_attribute("class")
                assert texts == {
                    GPT_TEXT: "turn assistant",
                    "".join(claude_words[:3]): "turn assistant incomplete",
                }
                shot(page, "4-sessions", backend)
        finally:
            for hold in (first, second, claude_hold):
                hold.set()
            close(store)


def close(store: SQLiteStore) -> None:
    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    closing = threading.Thread(target=anyio.run, args=(store.aclose,))
    closing.start()
    closing.join(10)


def _milliseconds() -> re.Pattern[str]:
    return re.compile(r"^\d+ ms$")


def _rate(*, estimated: bool) -> re.Pattern[str]:
    return re.compile(r"^≈\d+\.\d$" if estimated else r"^\d+\.\d$")


def test_a_dropped_connection_resumes_where_it_stopped(backend: str, page: Page) -> None:
    hold = threading.Event()
    text_words = words(GPT_TEXT)
    with LoopbackServer() as upstream:
        upstream.add(chat_reply(GPT_TEXT, holds=[(4, hold)]))
        # The server lets a stream run on for a while after its client went, awaiting a reconnect.
        app = create_app(upstream_models(upstream)[:1], resume_grace=10)
        try:
            with served(app, backend) as url:
                proxy = Proxy(int(url.rsplit(":", 1)[1]))
                try:
                    page.goto(proxy.url + "/")
                    expect(pane(page, "gpt")).to_have_count(1)
                    page.fill("#prompt", "Tell me about tea")
                    page.click("#send")
                    expect(reply_of(page, "gpt")).to_have_text("".join(text_words[:3]))
                    proxy.cut()  # the network drops; the stream goes on at the server
                    expect(pane(page, "gpt")).not_to_have_attribute("data-resumes", "0")
                    hold.set()
                    # Every word exactly once: resumed after the last event it read.
                    expect(reply_of(page, "gpt")).to_have_text(GPT_TEXT)
                    expect(pane(page, "gpt")).to_have_attribute("data-state", "done")
                    assert not upstream.requests[0].disconnected.is_set()
                    assert len(upstream.requests) == 1  # resumed, not asked again
                    shot(page, "5-resumed", backend)
                finally:
                    proxy.close()
        finally:
            hold.set()


def test_a_server_with_keys_asks_for_one_and_keeps_it_for_the_tab_only(
    backend: str, page: Page, browser: Browser
) -> None:
    app = create_app([ScriptedModel(name="echo", chunk_size=3)], api_keys=["playground-key"])
    with served(app, backend) as url:
        page.goto(url + "/")
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible()
        shot(page, "6-key", backend)
        page.fill("#key-input", "not-the-key")
        page.click("#key-save")
        expect(dialog).to_be_visible()
        expect(page.locator("#key-error")).to_contain_text("not valid")
        page.fill("#key-input", "playground-key")
        page.click("#key-save")
        expect(dialog).to_be_hidden()
        expect(page.locator("#models input")).to_have_count(1)
        expect(page.locator("#key-status")).to_be_visible()
        page.fill("#prompt", "hello there")
        page.click("#send")
        expect(reply_of(page, "echo")).to_contain_text("hello there")
        expect(pane(page, "echo")).to_have_attribute("data-state", "done")
        # Kept in this tab's session storage, nowhere that outlives it.
        assert page.evaluate("sessionStorage.getItem('lionflow.apiKey')") == "playground-key"
        assert page.evaluate("localStorage.length") == 0
        assert "playground-key" not in page.url
        # Another tab (a new browsing context) is asked again.
        other = browser.new_context()
        try:
            fresh = other.new_page()
            fresh.goto(url + "/")
            expect(fresh.locator("#key-dialog")).to_be_visible()
        finally:
            other.close()
        # Forgetting it: the next call asks again.
        page.click("#forget-key")
        assert page.evaluate("sessionStorage.getItem('lionflow.apiKey')") is None


def test_a_flow_runs_with_its_operations_streaming_live(backend: str, page: Page) -> None:
    hold = threading.Event()
    line = "Steam rises from a cup at dawn."
    with LoopbackServer() as upstream:
        upstream.add(chat_reply(GPT_TEXT, holds=[(4, hold)]), chat_reply(line, holds=[]))

        def pipeline(session: Session) -> Builder:
            topic = session.metadata["inputs"]["topic"]
            builder = Builder(session=session)
            ideas = builder.communicate(f"Ideas about {topic}", imodel="gpt", name="ideas")
            builder.communicate("One line from them", imodel="gpt", name="line", context_from=[ideas])
            return builder

        app = create_app(upstream_models(upstream), flows={"pipeline": pipeline})
        try:
            with served(app, backend) as url:
                page.goto(url + "/")
                page.click("#tab-flows")
                expect(page.locator("#flow-name option")).to_have_text(["pipeline"])
                page.fill("#flow-inputs", '{"topic": "tea"}')
                page.click("#run-flow")
                ideas = page.locator("#operations tr", has_text="ideas")
                expect(ideas.locator(".text")).to_have_text("".join(words(GPT_TEXT)[:3]))
                expect(ideas.locator(".state")).to_have_text("streaming")
                expect(ideas.locator(".chunks")).not_to_have_text("0")
                expect(page.locator("#run-status")).to_have_text("running…")
                expect(page.locator("#operations tr", has_text="line")).to_have_count(0)
                shot(page, "7-flow-running", backend)
                hold.set()
                expect(page.locator("#run-status")).to_have_text("completed")
                expect(ideas.locator(".state")).to_have_text("completed")
                expect(ideas.locator(".text")).to_have_text(GPT_TEXT)
                second = page.locator("#operations tr", has_text="One line").or_(
                    page.locator('#operations tr[data-state="completed"]').nth(1)
                )
                expect(second.locator(".text")).to_have_text(line)
                # The second step was asked with the first one's answer in its prompt.
                assert GPT_TEXT in upstream.requests[1].body.decode()
                shot(page, "8-flow-done", backend)
        finally:
            hold.set()


def test_the_page_and_its_files_come_from_the_package_and_this_origin_only(backend: str, page: Page) -> None:
    app = create_app([ScriptedModel(name="echo")], api_keys=["k"])
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    with served(app, backend) as url:
        response = page.goto(url + "/")
        assert response is not None
        assert response.ok
        assert "default-src 'self'" in response.headers["content-security-policy"]
        expect(page.locator("#key-dialog")).to_be_visible()  # the page loads without a key
        assert stored_json(page, "/healthz") == {"status": "ok"}
    assert requested
    assert all(address.startswith(url + "/") for address in requested)
