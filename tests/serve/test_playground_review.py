"""A hostile review of the playground, in the real headless Chromium: text that looks like HTML,
models that fail before and during their answer, Stop at awkward moments, connections cut at
different points with and without a resume grace, flows that fail or are stopped, a key that stops
working, and the browser's console, which must stay empty in normal use."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from lionflow import Session, iModel
from lionflow.operations import Builder
from lionflow.serve import create_app
from lionflow.session import SQLiteStore
from lionflow.testing import ScriptedModel
from tests.loopback import LoopbackServer, Reply
from tests.serve.playground import Proxy, chat_reply, needs_chromium, served, words

pytestmark = [needs_chromium()]

TEXT = "Green tea is steamed, black tea is fully oxidised, and oolong sits between the two of them."
HOSTILE = (
    '</script><script>window.__xss="script"</script><img src=x onerror="window.__xss=\'img\'"><b>bold</b>'
)


class Console:
    """The page's console errors and warnings, and its uncaught exceptions."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.favicon: list[
            str
        ] = []  # the browser's own ask for /favicon.ico: the page names no icon, so it 404s (reported)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            if str(message.location.get("url", "")).endswith("/favicon.ico"):
                self.favicon.append(message.text)
                return
            self.errors.append(f"{message.type}: {message.text} at {message.location.get('url')}")


@pytest.fixture
def console(page: Page) -> Console:
    return Console(page)


def pane(page: Page, model: str) -> Any:
    return page.locator(f'.pane[data-model="{model}"]')


def reply_of(page: Page, model: str) -> Any:
    return pane(page, model).locator(".turn.assistant").last


def send(page: Page, prompt: str) -> None:
    page.fill("#prompt", prompt)
    page.click("#send")


def gpt(upstream: LoopbackServer, **options: Any) -> iModel:
    return iModel(
        provider="openai",
        model="gpt-test",
        name="gpt",
        base_url=upstream.url + "/v1",
        api_key="up",
        **options,
    )


def one_step(session: Session) -> Builder:
    """A flow of one operation: ideas from the served model ``gpt``."""
    builder = Builder(session=session)
    builder.communicate("Ideas", imodel="gpt", name="ideas")
    return builder


def in_thread(function: Any, *args: Any) -> Any:
    # Playwright's sync API runs an event loop in this thread: the store's async calls go elsewhere.
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(anyio.run(function, *args)))
    worker.start()
    worker.join(10)
    return result[0] if result else None


def wait_until(condition: Any, seconds: float = 10) -> None:
    # A bounded wait (a hang becomes a failure), not a timing.
    done = threading.Event()
    for _ in range(int(seconds * 20)):
        if condition():
            return
        done.wait(0.05)
    raise AssertionError("the condition did not come true")


def close(store: SQLiteStore) -> None:
    in_thread(store.aclose)


def roles_model(name: str = "echo") -> ScriptedModel:
    """Answers with the roles and texts it was asked with: what a continued conversation carried."""

    def answer(messages: list[dict[str, Any]]) -> str:
        return json.dumps([[message["role"], str(message["content"])] for message in messages])

    return ScriptedModel(name=name, responses=answer, chunk_size=7)


# -- hostile text ---------------------------------------------------------------------------------


def test_model_names_replies_and_sessions_that_look_like_html_stay_text(
    page: Page, console: Console, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "serve.db")
    model = ScriptedModel(name=HOSTILE[:60], responses=[HOSTILE], chunk_size=5)
    app = create_app([model], store=store)
    try:
        with served(app, "asyncio") as url:
            page.goto(url + "/")
            expect(page.locator("#models input")).to_have_count(1)
            send(page, HOSTILE)
            expect(page.locator(".pane")).to_have_count(1)
            reply = page.locator(".pane .turn.assistant").last
            expect(reply).to_have_text(HOSTILE)
            expect(page.locator(".pane .turn.user")).to_have_text(HOSTILE)
            expect(page.locator(".pane h2.model")).to_have_text(HOSTILE[:60])
            expect(page.locator(".pane")).to_have_attribute("data-state", "done")
            page.click("#tab-sessions")
            page.locator("#session-list button").first.click()
            expect(page.locator("#session-detail .turn .text").last).to_have_text(HOSTILE)
            assert page.evaluate("window.__xss") is None
            assert page.locator("main b, main img, main script").count() == 0
            assert console.errors == []
    finally:
        close(store)


def test_a_stored_session_named_like_html_is_listed_and_shown_as_text(
    page: Page, console: Console, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "serve.db")

    async def stored() -> str:
        # As `lionflow chat --session NAME` would leave it: a named session, a branch, a turn.
        session = Session(store=store, metadata={"name": HOSTILE})
        session.create_branch(name="<i>branch</i>", system=HOSTILE)
        await session.flush()
        return session.id

    session_id = in_thread(stored)
    app = create_app([ScriptedModel(name="echo")], store=store)
    try:
        with served(app, "asyncio") as url:
            page.goto(url + "/")
            page.click("#tab-sessions")
            button = page.locator(f'#session-list button[data-session="{session_id}"]')
            expect(button).to_contain_text(HOSTILE)
            button.click()
            expect(page.locator("#session-detail h2")).to_have_text(HOSTILE)
            expect(page.locator("#session-detail h3")).to_have_text("Branch <i>branch</i> (1 messages)")
            expect(page.locator("#session-detail .turn .text")).to_have_text(HOSTILE)
            assert page.evaluate("window.__xss") is None
            assert page.locator("main b, main i, main img, main script").count() == 0
            assert console.errors == []
    finally:
        close(store)


def test_a_flow_whose_step_raises_html_shows_the_error_as_text(page: Page, console: Console) -> None:
    async def boom() -> None:
        raise ValueError(HOSTILE)

    def failing(session: Session) -> Builder:
        builder = Builder(session=session)
        builder.add(boom, name="boom")
        return builder

    app = create_app([ScriptedModel(name="echo")], flows={"failing": failing})
    with served(app, "asyncio") as url:
        page.goto(url + "/")
        page.click("#tab-flows")
        expect(page.locator("#flow-name option")).to_have_text(["failing"])
        page.click("#run-flow")
        row = page.locator("#operations tr", has_text="boom")
        expect(row.locator(".state")).to_have_text("failed")
        expect(row.locator(".text")).to_have_text(f"ValueError: {HOSTILE}")
        expect(page.locator("#run-status")).to_have_attribute("data-state", "failed")
        expect(page.locator("#run-status")).to_contain_text("operation boom failed: ValueError(")
        expect(page.locator("#run-status")).to_contain_text('<img src=x onerror="window.__xss=')
        expect(page.locator("#run-flow")).to_be_enabled()
        assert page.evaluate("window.__xss") is None
        assert page.locator("main b, main img, main script").count() == 0
        assert console.errors == []


# -- models that fail ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_model_failing_mid_stream_shows_its_error_and_keeps_the_text_so_far(
    backend: str, page: Page, console: Console
) -> None:
    failing = ScriptedModel(
        name="flaky", responses=["one two three four five six"], chunk_size=4, fail_after=2
    )
    app = create_app([failing, ScriptedModel(name="echo", responses=["fine"])])
    with served(app, backend) as url:
        page.goto(url + "/")
        expect(page.locator(".pane")).to_have_count(2)
        send(page, "hello")
        expect(pane(page, "flaky")).to_have_attribute("data-state", "error")
        expect(pane(page, "flaky").locator(".turn.error")).to_contain_text("scripted failure")
        expect(reply_of(page, "flaky")).to_have_text("one two ")
        expect(reply_of(page, "flaky")).to_have_class("turn assistant incomplete")
        expect(pane(page, "echo")).to_have_attribute("data-state", "done")
        expect(pane(page, "flaky").locator(".stop")).to_be_disabled()
        assert console.errors == []


def test_an_upstream_refusal_before_the_first_byte_is_the_panes_error(page: Page) -> None:
    with LoopbackServer() as upstream:
        upstream.add(Reply.json(400, {"error": {"message": "the model does not like <b>this</b>"}}))
        app = create_app([gpt(upstream, max_retries=0)])
        with served(app, "asyncio") as url:
            page.goto(url + "/")
            send(page, "hello")
            expect(pane(page, "gpt")).to_have_attribute("data-state", "error")
            expect(pane(page, "gpt").locator(".turn.error")).to_contain_text("does not like <b>this</b>")
            expect(pane(page, "gpt").locator(".stop")).to_be_disabled()
            assert page.locator("main b").count() == 0


# -- conversations ---------------------------------------------------------------------------------


def test_the_second_prompt_carries_the_first_turn_and_the_system(page: Page, console: Console) -> None:
    app = create_app([roles_model()])
    with served(app, "asyncio") as url:
        page.goto(url + "/")
        page.fill("#system", "be brief")
        send(page, "first")
        expect(pane(page, "echo")).to_have_attribute("data-state", "done")
        first = reply_of(page, "echo").text_content()
        assert json.loads(first or "") == [["system", "be brief"], ["user", "first"]]
        send(page, "second")
        expect(pane(page, "echo").locator(".turn.assistant")).to_have_count(2)
        expect(pane(page, "echo")).to_have_attribute("data-state", "done")
        second = json.loads(reply_of(page, "echo").text_content() or "")
        assert second == [["system", "be brief"], ["user", "first"], ["assistant", first], ["user", "second"]]
        # New chat starts over.
        page.click("#clear")
        send(page, "third")
        expect(pane(page, "echo")).to_have_attribute("data-state", "done")
        assert json.loads(reply_of(page, "echo").text_content() or "") == [
            ["system", "be brief"],
            ["user", "third"],
        ]
        assert console.errors == []


def test_sending_while_a_pane_streams_is_refused_with_a_notice(page: Page, console: Console) -> None:
    hold = threading.Event()
    with LoopbackServer() as upstream:
        upstream.add(chat_reply(TEXT, holds=[(4, hold)]))
        app = create_app([gpt(upstream)])
        try:
            with served(app, "asyncio") as url:
                page.goto(url + "/")
                send(page, "first")
                expect(reply_of(page, "gpt")).to_have_text("".join(words(TEXT)[:3]))
                send(page, "second")
                expect(page.locator("#notice")).to_have_text("Wait for gpt to finish, or stop it.")
                expect(page.locator("#prompt")).to_have_value("second")  # the prompt is kept
                assert len(upstream.requests) == 1
                hold.set()
                expect(pane(page, "gpt")).to_have_attribute("data-state", "done")
                assert console.errors == []
        finally:
            hold.set()


def test_at_most_four_models_can_be_chosen(page: Page, console: Console) -> None:
    app = create_app([ScriptedModel(name=f"m{index}") for index in range(6)])
    with served(app, "asyncio") as url:
        page.goto(url + "/")
        boxes = page.locator("#models input")
        expect(boxes).to_have_count(6)
        expect(page.locator(".pane")).to_have_count(2)
        boxes.nth(2).check()
        boxes.nth(3).check()
        expect(page.locator(".pane")).to_have_count(4)
        expect(boxes.nth(4)).to_be_disabled()
        expect(boxes.nth(5)).to_be_disabled()
        boxes.nth(0).uncheck()
        expect(boxes.nth(4)).to_be_enabled()
        expect(page.locator(".pane")).to_have_count(3)
        assert console.errors == []


# -- Stop ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_stop_before_the_first_token_cancels_upstream_and_the_pane_sends_again(
    backend: str, page: Page, console: Console
) -> None:
    hold = threading.Event()
    with LoopbackServer() as upstream:
        upstream.add(chat_reply(TEXT, holds=[(0, hold)]), chat_reply("Second answer.", holds=[]))
        app = create_app([gpt(upstream)])
        try:
            with served(app, backend) as url:
                page.goto(url + "/")
                send(page, "first")
                expect(pane(page, "gpt")).to_have_attribute("data-state", "waiting")
                wait_until(lambda: bool(upstream.requests))  # the request reached upstream
                pane(page, "gpt").locator(".stop").click()
                expect(pane(page, "gpt")).to_have_attribute("data-state", "stopped")
                assert upstream.requests[0].disconnected.wait(10)
                send(page, "second")
                expect(reply_of(page, "gpt")).to_have_text("Second answer.")
                expect(pane(page, "gpt")).to_have_attribute("data-state", "done")
                assert console.errors == []
        finally:
            hold.set()


# -- dropped connections ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_dropped_connection_without_grace_ends_the_pane_with_an_error_not_a_hang(
    backend: str, page: Page
) -> None:
    hold = threading.Event()
    with LoopbackServer() as upstream:
        upstream.add(chat_reply(TEXT, holds=[(4, hold)]))
        app = create_app([gpt(upstream)], resume_grace=0)
        try:
            with served(app, backend) as url:
                proxy = Proxy(int(url.rsplit(":", 1)[1]))
                try:
                    page.goto(proxy.url + "/")
                    send(page, "hello")
                    expect(reply_of(page, "gpt")).to_have_text("".join(words(TEXT)[:3]))
                    proxy.cut()
                    assert upstream.requests[0].disconnected.wait(10)  # cancelled at once
                    expect(pane(page, "gpt")).to_have_attribute("data-state", "error")
                    expect(reply_of(page, "gpt")).to_have_text("".join(words(TEXT)[:3]))
                    expect(pane(page, "gpt").locator(".stop")).to_be_disabled()
                finally:
                    page.goto("about:blank")  # (no reconnect races the relay's closing)
                    proxy.close()
        finally:
            hold.set()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_cuts_at_several_points_of_one_stream_lose_and_repeat_nothing(backend: str, page: Page) -> None:
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    points = [2, 5, 9]  # a cut after the first word, mid-way, and near the end
    holds = [(index, threading.Event()) for index in points]
    with LoopbackServer() as upstream:
        upstream.add(chat_reply(text, holds=holds))
        app = create_app([gpt(upstream)], resume_grace=10)
        try:
            with served(app, backend) as url:
                proxy = Proxy(int(url.rsplit(":", 1)[1]))
                try:
                    page.goto(proxy.url + "/")
                    send(page, "hello")
                    for cuts, (index, hold) in enumerate(holds, start=1):
                        # Held after the role and index - 1 words: cut there, then let it go on.
                        expect(reply_of(page, "gpt")).to_have_text("".join(words(text)[: index - 1]))
                        proxy.cut()
                        expect(pane(page, "gpt")).to_have_attribute("data-resumes", str(cuts))
                        hold.set()
                    expect(pane(page, "gpt")).to_have_attribute("data-state", "done")
                    expect(reply_of(page, "gpt")).to_have_text(text)
                    expect(pane(page, "gpt").locator(".chunks")).to_have_text(str(len(words(text))))
                    assert len(upstream.requests) == 1
                finally:
                    page.goto("about:blank")  # (no reconnect races the relay's closing)
                    proxy.close()
        finally:
            for _, hold in holds:
                hold.set()


def test_one_cut_drops_both_panes_and_each_resumes_its_own_stream(page: Page, console: Console) -> None:
    other = "Tea comes from one plant, Camellia sinensis, grown on hills across Asia and Africa."
    gpt_hold, other_hold = threading.Event(), threading.Event()
    with LoopbackServer() as upstream:
        # The panes' requests take these in the order they arrive: which pane gets which is open.
        upstream.add(chat_reply(TEXT, holds=[(4, gpt_hold)]), chat_reply(other, holds=[(6, other_hold)]))
        second = iModel(
            provider="openai", model="gpt-test", name="gpt2", base_url=upstream.url + "/v1", api_key="up"
        )
        app = create_app([gpt(upstream), second], resume_grace=10)
        try:
            with served(app, "asyncio") as url:
                proxy = Proxy(int(url.rsplit(":", 1)[1]))
                try:
                    page.goto(proxy.url + "/")
                    expect(page.locator(".pane")).to_have_count(2)
                    send(page, "hello")
                    wait_until(lambda: len(upstream.requests) == 2)
                    held = ["".join(words(TEXT)[:3]), "".join(words(other)[:5])]
                    for model in ("gpt", "gpt2"):
                        expect(reply_of(page, model)).to_have_text(
                            re.compile("^(" + "|".join(map(re.escape, held)) + ")$")
                        )
                    assert sorted(
                        reply_of(page, model).text_content() or "" for model in ("gpt", "gpt2")
                    ) == sorted(held)
                    proxy.cut()
                    for model in ("gpt", "gpt2"):
                        expect(pane(page, model)).not_to_have_attribute("data-resumes", "0")
                    gpt_hold.set()
                    other_hold.set()
                    for model in ("gpt", "gpt2"):
                        expect(pane(page, model)).to_have_attribute("data-state", "done")
                    replies = sorted(reply_of(page, model).text_content() or "" for model in ("gpt", "gpt2"))
                    assert replies == sorted([TEXT, other])
                    assert len(upstream.requests) == 2
                    # (the cut itself is logged by the browser as a failed load: not the page's error)
                    assert [e for e in console.errors if "ERR_INCOMPLETE_CHUNKED_ENCODING" not in e] == []
                finally:
                    page.goto("about:blank")
                    proxy.close()
        finally:
            gpt_hold.set()
            other_hold.set()


# -- unicode, length -------------------------------------------------------------------------------


def test_emoji_and_scripts_cut_into_one_code_point_chunks_arrive_whole(page: Page, console: Console) -> None:
    text = "🍵 thé — 茶 👩‍👩‍👧 ﷽ e\u0301 ok"
    app = create_app([ScriptedModel(name="echo", responses=[text], chunk_size=1)])
    with served(app, "asyncio") as url:
        page.goto(url + "/")
        send(page, "tea")
        expect(pane(page, "echo")).to_have_attribute("data-state", "done")
        expect(reply_of(page, "echo")).to_have_text(text)
        assert console.errors == []


def test_a_long_reply_arrives_whole(page: Page, console: Console) -> None:
    text = " ".join(f"word{index}" for index in range(8000))
    app = create_app([ScriptedModel(name="echo", responses=[text], chunk_size=40)])
    with served(app, "asyncio") as url:
        page.goto(url + "/")
        send(page, "long")
        expect(pane(page, "echo")).to_have_attribute("data-state", "done")
        assert reply_of(page, "echo").text_content() == text
        assert console.errors == []


# -- flows -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_stopping_a_flow_cancels_its_upstream_call(backend: str, page: Page, console: Console) -> None:
    hold = threading.Event()
    with LoopbackServer() as upstream:
        upstream.add(chat_reply(TEXT, holds=[(4, hold)]))

        app = create_app([gpt(upstream)], flows={"pipeline": one_step})
        try:
            with served(app, backend) as url:
                page.goto(url + "/")
                page.click("#tab-flows")
                page.click("#run-flow")
                ideas = page.locator("#operations tr", has_text="ideas")
                expect(ideas.locator(".text")).to_have_text("".join(words(TEXT)[:3]))
                page.click("#stop-flow")
                expect(page.locator("#run-status")).to_have_text("stopped")
                assert upstream.requests[0].disconnected.wait(10)
                expect(page.locator("#run-flow")).to_be_enabled()
                expect(page.locator("#stop-flow")).to_be_disabled()
                assert console.errors == []
        finally:
            hold.set()


# -- sessions --------------------------------------------------------------------------------------


def test_without_a_store_the_sessions_panel_says_so(page: Page) -> None:
    app = create_app([ScriptedModel(name="echo")])
    with served(app, "asyncio") as url:
        page.goto(url + "/")
        page.click("#tab-sessions")
        expect(page.locator("#session-list li")).to_have_text(
            ["this server keeps no sessions: start it with --db PATH (create_app(store=...)) to record them"]
        )


# -- keys ------------------------------------------------------------------------------------------


def test_a_key_that_stops_working_asks_again_and_escape_gives_up_cleanly(page: Page) -> None:
    app = create_app([ScriptedModel(name="echo", responses=lambda messages: "ok")], api_keys=["right"])
    with served(app, "asyncio") as url:
        page.goto(url + "/")
        page.fill("#key-input", "right")
        page.click("#key-save")
        expect(page.locator("#models input")).to_have_count(1)
        page.evaluate("sessionStorage.setItem('lionflow.apiKey', 'revoked')")
        send(page, "hello")
        expect(page.locator("#key-dialog")).to_be_visible()
        expect(page.locator("#key-error")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator("#key-dialog")).to_be_hidden()
        expect(pane(page, "echo")).to_have_attribute("data-state", "error")
        # A new try asks again; the right key lets it through.
        send(page, "again")
        expect(page.locator("#key-dialog")).to_be_visible()
        page.fill("#key-input", "right")
        page.click("#key-save")
        expect(pane(page, "echo")).to_have_attribute("data-state", "done")
        expect(reply_of(page, "echo")).to_have_text("ok")


def test_escape_on_the_key_dialog_gives_up_without_using_what_was_typed(page: Page) -> None:
    app = create_app([ScriptedModel(name="echo")], api_keys=["right"])
    sent: list[str | None] = []
    page.on("request", lambda request: sent.append(request.headers.get("authorization")))
    with served(app, "asyncio") as url:
        page.goto(url + "/")
        expect(page.locator("#key-dialog")).to_be_visible()
        page.fill("#key-input", "half-typed")
        page.keyboard.press("Escape")
        expect(page.locator("#key-dialog")).to_be_hidden()
        expect(page.locator("#models-empty")).to_contain_text(
            "Could not list the models: this server needs an API key"
        )
        assert page.evaluate("sessionStorage.getItem('lionflow.apiKey')") is None
        assert "Bearer half-typed" not in sent


@pytest.mark.parametrize(
    "path",
    [
        "/playground/../_auth.py",
        "/playground/..%2f_auth.py",
        "/playground/%2e%2e%2f_playground.py",
        "/playground/index.html",
        "/playground/playground.js%00.py",
        "/playground//etc/passwd",
    ],
)
def test_only_the_two_files_are_served_under_playground(page: Page, path: str) -> None:
    app = create_app([ScriptedModel(name="echo")])
    with served(app, "asyncio") as url:
        response = page.request.get(url + path)
        assert response.status == 404, (path, response.status, response.text()[:200])
        assert "import" not in response.text()


# -- the review's defects, each fixed at its root (these failed before the fix) -------------------


def test_a_resumed_pane_says_streaming_again_once_text_flows(page: Page) -> None:
    first, second = threading.Event(), threading.Event()
    with LoopbackServer() as upstream:
        upstream.add(chat_reply(TEXT, holds=[(4, first), (8, second)]))
        app = create_app([gpt(upstream)], resume_grace=10)
        try:
            with served(app, "asyncio") as url:
                proxy = Proxy(int(url.rsplit(":", 1)[1]))
                try:
                    page.goto(proxy.url + "/")
                    send(page, "hello")
                    expect(reply_of(page, "gpt")).to_have_text("".join(words(TEXT)[:3]))
                    proxy.cut()
                    expect(pane(page, "gpt")).to_have_attribute("data-resumes", "1")
                    first.set()
                    expect(reply_of(page, "gpt")).to_have_text("".join(words(TEXT)[:7]))
                    expect(pane(page, "gpt").locator(".status")).to_have_text("streaming")
                finally:
                    second.set()
                    page.goto("about:blank")
                    proxy.close()
        finally:
            first.set()
            second.set()


def test_the_run_button_stays_disabled_while_a_flow_runs_across_tab_switches(page: Page) -> None:
    hold = threading.Event()
    with LoopbackServer() as upstream:
        upstream.add(chat_reply(TEXT, holds=[(4, hold)]))

        app = create_app([gpt(upstream)], flows={"pipeline": one_step})
        try:
            with served(app, "asyncio") as url:
                page.goto(url + "/")
                page.click("#tab-flows")
                page.click("#run-flow")
                expect(page.locator("#run-status")).to_have_text("running…")
                page.click("#tab-compare")
                page.click("#tab-flows")
                expect(page.locator("#run-status")).to_have_text("running…")
                expect(page.locator("#run-flow")).to_be_disabled()
                hold.set()
                expect(page.locator("#run-status")).to_have_text("completed")
                expect(page.locator("#run-flow")).to_be_enabled()
        finally:
            hold.set()


def test_a_session_whose_id_holds_a_slash_can_be_shown(page: Page, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "serve.db")
    app = create_app([ScriptedModel(name="echo", responses=["hi"])], store=store)
    try:
        with served(app, "asyncio") as url:
            page.goto(url + "/")
            # An OpenAI client naming its end user "team/alice": the session is user-team/alice.
            page.evaluate(
                """async () => {
                    const messages = [{role: "user", content: "x"}];
                    const body = {model: "echo", user: "team/alice", messages};
                    await fetch("/v1/chat/completions", {method: "POST", body: JSON.stringify(body),
                        headers: {"Content-Type": "application/json"}});
                }"""
            )
            page.click("#tab-sessions")
            expect(page.locator("#session-list button")).to_have_count(1)
            page.locator("#session-list button").first.click()
            expect(page.locator("#session-detail h2")).to_have_text("Session user-team/alice")
            expect(page.locator("#session-detail .turn .text")).to_have_text(["x", "hi"])
    finally:
        close(store)


def test_normal_use_logs_no_console_error(page: Page, console: Console) -> None:
    app = create_app([ScriptedModel(name="echo")])
    with served(app, "asyncio") as url:
        page.goto(url + "/")
        send(page, "hello")
        expect(pane(page, "echo")).to_have_attribute("data-state", "done")
        assert console.favicon == []
        assert console.errors == []


def test_a_prompt_left_unanswered_is_not_sent_again_as_history(page: Page) -> None:
    with LoopbackServer() as upstream:
        upstream.add(Reply.json(400, {"error": {"message": "nope"}}), chat_reply("ok.", holds=[]))
        app = create_app([gpt(upstream, max_retries=0)])
        with served(app, "asyncio") as url:
            page.goto(url + "/")
            send(page, "first")
            expect(pane(page, "gpt")).to_have_attribute("data-state", "error")
            send(page, "second")
            expect(pane(page, "gpt")).to_have_attribute("data-state", "done")
            assert upstream.requests[1].json["messages"] == [{"role": "user", "content": "second"}]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_stop_cancels_the_upstream_call_at_once_even_with_a_resume_grace(
    backend: str, page: Page, tmp_path: Path
) -> None:
    hold = threading.Event()
    store = SQLiteStore(tmp_path / "s.db")
    with LoopbackServer() as upstream:
        upstream.add(chat_reply(TEXT, holds=[(4, hold)]))
        # The server would wait 60 s for a client that left to come back; Stop is not leaving.
        app = create_app([gpt(upstream)], store=store, resume_grace=60)
        try:
            with served(app, backend) as url:
                page.goto(url + "/")
                send(page, "first")
                expect(reply_of(page, "gpt")).to_have_text("".join(words(TEXT)[:3]))
                pane(page, "gpt").locator(".stop").click()
                expect(pane(page, "gpt")).to_have_attribute("data-state", "stopped")
                assert upstream.requests[0].disconnected.wait(10)
                page.click("#tab-sessions")
                page.locator("#session-list button").first.click()
                # What the person saw stop is what is stored: incomplete, cut where it stopped.
                last = page.locator("#session-detail .turn").last
                expect(last).to_have_class("turn assistant incomplete")
                expect(last.locator(".text")).to_have_text("".join(words(TEXT)[:3]))
        finally:
            hold.set()
            close(store)


def test_stopping_a_flow_cancels_it_at_once_even_with_a_resume_grace(page: Page) -> None:
    hold = threading.Event()
    with LoopbackServer() as upstream:
        upstream.add(chat_reply(TEXT, holds=[(4, hold)]))

        app = create_app([gpt(upstream)], flows={"pipeline": one_step}, resume_grace=60)
        try:
            with served(app, "asyncio") as url:
                page.goto(url + "/")
                page.click("#tab-flows")
                page.click("#run-flow")
                expect(page.locator("#operations tr .state")).to_have_text(["streaming"])
                page.click("#stop-flow")
                expect(page.locator("#run-status")).to_have_text("stopped")
                assert upstream.requests[0].disconnected.wait(10)
        finally:
            hold.set()


def test_a_model_reporting_no_usage_keeps_the_estimated_rate(page: Page) -> None:
    model = ScriptedModel(
        name="echo", responses=["one two three four five six seven"], chunk_size=3, usage=False
    )
    app = create_app([model])
    with served(app, "asyncio") as url:
        page.goto(url + "/")
        send(page, "x")
        expect(pane(page, "echo")).to_have_attribute("data-state", "done")
        expect(pane(page, "echo").locator(".chunks")).to_have_text("11")
        # No usage came from the model: the server's zeros are not its token count.
        expect(pane(page, "echo").locator(".tokens")).to_have_text("–")
        expect(pane(page, "echo").locator(".tps")).to_have_text(re.compile(r"^≈\d+\.\d$"))


def test_escape_on_the_key_prompt_leaves_a_way_to_give_one(page: Page) -> None:
    app = create_app([ScriptedModel(name="echo")], api_keys=["the-key"])
    with served(app, "asyncio") as url:
        page.goto(url + "/")
        expect(page.locator("#key-dialog")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator("#key-dialog")).to_be_hidden()
        page.click("#give-key")
        expect(page.locator("#key-dialog")).to_be_visible()
        page.fill("#key-input", "the-key")
        page.click("#key-save")
        expect(page.locator("#models input")).to_have_count(1)
