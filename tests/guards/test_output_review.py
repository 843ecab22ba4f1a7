"""Output guards under attack (a hostile review): a check that hangs or breaks, a call cancelled or
stopped from another task while checks run, and timeouts with text held back. Each test failed on
the code it was written against."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import anyio
import pytest

from lionflow import Chunk
from lionflow.errors import GuardViolation, ProviderTimeout, RateLimitError
from lionflow.guards.checks import blocklist
from lionflow.guards.guarded import GuardedStream
from lionflow.guards.output import OutputGuard, Window
from lionflow.services.policy import Timeout
from lionflow.services.providers.base import ChunkStream
from lionflow.testing import ScriptedModel
from tests.helpers import no_task_left

pytestmark = pytest.mark.anyio


@contextmanager
def hung_check() -> Iterator[OutputGuard]:
    """A guard whose sync check blocks its worker thread until the block ends (a check stuck on a
    network call without a timeout)."""
    gate = threading.Event()

    def stuck(window: Window) -> bool:
        gate.wait(30)
        return True

    try:
        yield OutputGuard(stuck, name="stuck", window=10, overlap=0)
    finally:
        gate.set()


async def test_cancelling_a_call_whose_sync_check_hangs_ends_it_at_once() -> None:
    model = ScriptedModel(name="m", responses=["x" * 100], chunk_size=5, delay=0.01)
    with hung_check() as guard, anyio.fail_after(3):  # it took 10 s: aclose waited for the thread
        async with no_task_left():
            with anyio.move_on_after(0.2):
                async with model.invoke("hi", guards=[guard]) as call:
                    async for _ in call:
                        pass
        assert model.open_streams == 0


async def test_aclose_from_another_task_while_a_sync_check_hangs_ends_the_call_at_once() -> None:
    model = ScriptedModel(name="m", responses=["x" * 100], chunk_size=5, delay=0.01)
    with hung_check() as guard, anyio.fail_after(3):
        async with no_task_left():
            call = model.invoke("hi", guards=[guard])
            async with anyio.create_task_group() as group:

                async def consume() -> None:
                    async for _ in call:
                        pass

                group.start_soon(consume)
                await anyio.sleep(0.1)
                await call.aclose()
        assert model.open_streams == 0
        assert call.response is not None
        assert call.response.finish_reason == "cancelled"


async def test_a_check_that_fails_with_a_provider_error_is_not_taken_for_the_providers() -> None:
    # (an LLM judge whose own model is rate limited): the driver retried the call's request as if
    # the answering model had failed, three more requests for one broken check
    def judge(window: Window) -> bool:
        raise RateLimitError("the judge's model is busy")

    model = ScriptedModel(name="m", responses=["x" * 100] * 4, chunk_size=5, max_retries=3)
    with pytest.raises(GuardViolation) as caught:
        await model.invoke("hi", guards=[OutputGuard(judge, name="judge", window=10, overlap=0)])
    assert len(model.requests) == 1
    assert caught.value.guard == "judge"
    assert isinstance(caught.value.__cause__, RateLimitError)
    assert model.open_streams == 0


@pytest.mark.parametrize("length", [24, 25])
async def test_the_last_window_is_marked_final_even_when_the_text_ends_at_a_window_edge(length: int) -> None:
    # A check that judges the whole at the end (a JSON object left open) never learnt it had ended
    # when the answer was a whole number of windows: no window said final.
    windows: list[Window] = []

    def record(window: Window) -> bool:
        windows.append(window)
        return True

    guard = OutputGuard(record, window=8, overlap=2)
    response = await ScriptedModel(name="m", responses=["x" * length], chunk_size=4).invoke(
        "hi", guards=[guard]
    )
    assert response.text == "x" * length
    assert [window.final for window in windows] == [False] * 3 + [True]
    assert windows[-1].end == length


async def test_an_answer_without_text_is_not_checked() -> None:
    # (a reply that only calls tools has no text for a check to judge)
    windows: list[Window] = []

    def record(window: Window) -> bool:
        windows.append(window)
        return False

    model = ScriptedModel(name="m", responses=[""], tool_calls=[{"name": "f", "arguments": {}}])
    response = await model.invoke("hi", guards=[OutputGuard(record, window=8, overlap=2)])
    assert response.finish_reason == "tool_calls"
    assert windows == []


async def _steady(pieces: int, *, stall_at: int | None = None) -> AsyncIterator[Chunk]:
    """A provider streaming two characters every 50 ms (stalling for good at `stall_at`)."""
    for position in range(pieces):
        await anyio.sleep(3600 if position == stall_at else 0.05)
        yield Chunk(type="text", data="ab")
    yield Chunk(type="finish", finish_reason="stop")


def _held_back(*, stall_at: int | None = None) -> GuardedStream:
    # the first 30 characters (15 chunks, 0.75 s) are held until their window is checked
    guard = OutputGuard(blocklist(["zz"]), window=30, overlap=1)
    return GuardedStream(ChunkStream(_steady(20, stall_at=stall_at)), [guard], first_chunk=0.3, idle=0.3)


async def test_text_held_for_its_checks_is_no_timeout_of_the_provider() -> None:
    # The provider sends a chunk every 50 ms, well within its 0.3 s timeouts; hold mode keeps the
    # first 30 characters back until their window passed. That wait was timed as the provider's:
    # ProviderTimeout(first_chunk), and a retry resent the request.
    model = ScriptedModel(
        name="m",
        responses=["ab" * 20],
        chunk_size=2,
        delay=0.05,
        max_retries=0,
        timeout=Timeout(idle=0.3, first_chunk=0.3),
    )
    guard = OutputGuard(blocklist(["zz"]), window=30, overlap=1)
    response = await model.invoke("hi", guards=[guard])
    assert response.text == "ab" * 20


async def test_a_guarded_stream_times_the_providers_reads_not_its_releases() -> None:
    stream = _held_back()
    received = ""
    async for chunk in stream:
        received += chunk.data
    await stream.aclose()
    assert received == "ab" * 20


async def test_a_guarded_stream_still_times_a_provider_that_stalls() -> None:
    stream = _held_back(stall_at=5)
    with anyio.fail_after(5), pytest.raises(ProviderTimeout) as caught:
        async for _ in stream:
            pass
    await stream.aclose()
    assert caught.value.phase == "idle"
    stream = _held_back(stall_at=0)
    with anyio.fail_after(5), pytest.raises(ProviderTimeout) as caught:
        async for _ in stream:
            pass
    await stream.aclose()
    assert caught.value.phase == "first_chunk"
