"""Output and input guards on real calls (ScriptedModel, and the openai SDK against a loopback
upstream): in hold mode no blocked word reaches a consumer, whatever the chunking and wherever the
word falls; the work is linear; a slow check does not slow the reading of the provider."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lionflow import Session, iModel
from lionflow.errors import ConfigurationError, GuardViolation
from lionflow.guards import StreamingHandler
from lionflow.guards.checks import blocklist, max_length
from lionflow.guards.output import GuardResult, InputGuard, OutputGuard, Window
from lionflow.operations import communicate
from lionflow.testing import ScriptedModel
from tests.loopback import LoopbackServer

pytestmark = pytest.mark.anyio

WORD = "FORBIDDEN"


async def _run(model: ScriptedModel, guard: OutputGuard) -> tuple[str, Any]:
    """What a consumer iterating the call receives (its text), and the call's Response."""
    received = ""
    async with model.invoke("hi", guards=[guard]) as call:
        async for chunk in call:
            if chunk.type == "text":
                received += chunk.data
    return received, call.response


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=st.text(alphabet="abc xyz.", max_size=300),
    after=st.text(alphabet="abc xyz.", max_size=300),
    chunk_size=st.integers(1, 40),
    window=st.integers(10, 60),
    with_word=st.booleans(),
)
async def test_in_hold_mode_a_blocked_word_never_reaches_the_consumer(
    before: str, after: str, chunk_size: int, window: int, with_word: bool
) -> None:
    text = before + (WORD if with_word else "") + after
    overlap = len(WORD) - 1  # every span of up to overlap + 1 characters is seen whole by a check
    guard = OutputGuard(blocklist([WORD]), name="no-word", window=window, overlap=overlap)
    model = ScriptedModel(name="m", responses=[text, text], chunk_size=chunk_size)
    received, response = await _run(model, guard)
    # the same answer as a turn: iterated, fed to a handler, and recorded in a branch
    session = Session()
    session.services.register(model)
    branch = session.create_branch(name="chat")
    handler = StreamingHandler()
    parameters = {"instruction": "hi", "imodel": "m", "guards": [guard], "streaming_handler": handler}
    iterated = "".join(
        [str(chunk) async for chunk in communicate(session=session, branch=branch, parameters=parameters)]
    )
    stored = branch.messages[-1].chat_msg["content"]
    assert iterated == stored == await handler.wait() == received
    if not with_word:
        assert received == text
        assert response.finish_reason == "stop"
        return
    assert WORD not in received
    assert text.startswith(received)  # released text is always a prefix of the full text
    # not even the word's beginning was let out: the overlap is held until the next window passed
    assert len(received) <= len(before)
    assert response.finish_reason == "content_filter"
    assert response.metadata["guard"]["name"] == "no-word"
    assert response.text == received
    assert model.open_streams == 0


async def test_release_first_lets_text_out_before_its_check_and_stops_within_a_window() -> None:
    text = "a" * 100 + WORD + "b" * 500
    guard = OutputGuard(blocklist([WORD]), window=20, overlap=10, mode="release_first")
    received, response = await _run(ScriptedModel(name="m", responses=[text], chunk_size=5), guard)
    assert response.finish_reason == "content_filter"
    assert text.startswith(received)
    assert len(received) <= 100 + len(WORD) + 2 * 20  # at most a window past the checked one


async def test_the_checks_see_each_character_at_most_once_plus_the_overlap() -> None:
    seen: list[int] = []

    def count(window: Window) -> bool:
        seen.append(len(window))
        return True

    text = "x" * 10_000
    guard = OutputGuard(count, window=200, overlap=50)
    received, _ = await _run(ScriptedModel(name="m", responses=[text], chunk_size=7), guard)
    assert received == text
    assert sum(seen) <= (1 + 50 / 200) * len(text)


async def test_a_slow_check_does_not_slow_the_reading_of_the_provider() -> None:
    happened: list[str] = []

    def pace(position: int) -> float:  # (the scripted provider asks before each chunk)
        happened.append(f"chunk {position}")
        return 0.001

    async def slow(window: Window) -> bool:
        await anyio.sleep(0.2)
        happened.append("check done")
        return True

    model = ScriptedModel(name="m", responses=["y" * 400], chunk_size=10, delay=pace, usage=False)
    received, _ = await _run(model, OutputGuard(slow, window=100, overlap=0))
    assert received == "y" * 400
    # The provider's 40 chunks were all read while the first check still ran.
    assert happened.index("chunk 39") < happened.index("check done")


async def test_on_violation_raise_raises_with_the_guards_name() -> None:
    guard = OutputGuard(blocklist([WORD]), name="strict", window=20, overlap=10, on_violation="raise")
    model = ScriptedModel(name="m", responses=["ok " * 20 + WORD], chunk_size=4)
    with pytest.raises(GuardViolation) as caught:
        await model.invoke("hi", guards=[guard])
    assert caught.value.guard == "strict"


async def test_a_check_may_say_why_and_keep_state_across_windows() -> None:
    guard = OutputGuard(max_length(50), window=10, overlap=0)
    received, response = await _run(ScriptedModel(name="m", responses=["z" * 200], chunk_size=3), guard)
    assert len(received) <= 50
    assert response.metadata["guard"]["reason"] == "longer than 50 characters"

    def verdict(window: Window) -> GuardResult:
        return GuardResult("q" not in window, "no q please")

    received, response = await _run(
        ScriptedModel(name="m", responses=["ppp q ppp"], chunk_size=2),
        OutputGuard(verdict, window=4, overlap=2),
    )
    assert response.metadata["guard"] == {"name": "verdict", "reason": "no q please"}


async def test_an_input_guard_refuses_before_any_request_reaches_the_upstream(server: LoopbackServer) -> None:
    model = iModel(provider="openai", model="m", base_url=server.url + "/v1", api_key="k", max_retries=0)
    guard = InputGuard(blocklist(["password"]), name="no-passwords")
    try:
        with pytest.raises(GuardViolation) as caught:
            await model.invoke([{"role": "user", "content": "my PASSWORD is hunter2"}], guards=[guard])
    finally:
        await model.aclose()
    assert caught.value.guard == "no-passwords"
    assert server.requests == []


async def test_the_models_guards_apply_to_every_call() -> None:
    guard = OutputGuard(blocklist([WORD]), window=20, overlap=len(WORD) - 1)
    model = ScriptedModel(name="m", responses=["fine", "also " + WORD], chunk_size=3, guards=[guard])
    assert (await model.invoke("one")).text == "fine"
    second = await model.invoke("two")
    assert second.finish_reason == "content_filter"
    assert second.text == "also "[: len(second.text)]


def test_bad_guard_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="overlap"):
        OutputGuard(blocklist(["x"]), window=10, overlap=10)
    with pytest.raises(ConfigurationError, match="mode"):
        OutputGuard(blocklist(["x"]), mode="later")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="one string"):
        blocklist("word")
    with pytest.raises(ConfigurationError, match="guards are"):
        ScriptedModel(name="m").invoke("hi", guards=["not a guard"])
