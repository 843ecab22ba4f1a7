"""Idle and total timeouts after the first chunk, and stops, without a cancel scope per read.

The driver watches every provider read that has to wait with one `ReadWatch` per call: a deadline
that moves with each read and one timer, and a stop from another task that interrupts the read it
waits on. These tests pin what a user sees of that on both backends: a timeout that fires in the
middle of a stream with the right phase and the text that arrived, an idle limit that restarts with
every chunk, a stop from another task while a read waits (on a timer or on an event), a read that
holds a cancel scope of its own, and a consumer cancelled while it waits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from lionflow import Chunk, Timeout
from lionflow.errors import ProviderTimeout
from lionflow.services.call import ModelCall
from lionflow.services.providers.scripted import ScriptedProvider
from lionflow.testing import ScriptedModel
from tests.helpers import no_task_left

pytestmark = pytest.mark.anyio

TEXT = "abcdefghij"  # ten text chunks of one character


def _stalls_at(position: int) -> ScriptedModel:
    """Chunks at once until `position`, whose read then waits far longer than any limit here."""
    return ScriptedModel(
        responses=[TEXT], chunk_size=1, usage=False, delay=lambda at: 30.0 if at == position else 0.0
    )


class _WaitsOnEvent(ScriptedProvider):
    """Reads that wait on an event nobody sets after the first `ready` chunks, inside a cancel scope
    of their own (as an HTTP read inside its socket timeout): a wait only a stop or a timeout ends."""

    ready = 3

    async def _emit(self, chunks: Iterator[Chunk]) -> AsyncIterator[Chunk]:
        for position, chunk in enumerate(chunks):
            if position >= self.ready:
                with anyio.fail_after(60):
                    await anyio.Event().wait()
            yield chunk


def _waits_on_event(timeout: Timeout | None = None) -> ScriptedModel:
    model = ScriptedModel(responses=[TEXT], chunk_size=1, usage=False, timeout=timeout)
    model.adapter = _WaitsOnEvent(model.adapter.settings)
    return model


async def _texts(call: ModelCall) -> list[str]:
    return [chunk.data async for chunk in call if chunk.type == "text"]


@pytest.mark.parametrize("position", [1, 5])
async def test_an_idle_timeout_fires_mid_stream_with_its_phase_and_the_text_so_far(position: int) -> None:
    model = _stalls_at(position)
    model.timeout = Timeout(idle=0.2)
    call = model.invoke("go")
    with anyio.fail_after(5), pytest.raises(ProviderTimeout) as caught:
        await call
    assert (caught.value.phase, caught.value.seconds) == ("idle", 0.2)
    assert call.response is not None
    assert call.response.incomplete
    assert call.response.text == TEXT[:position]
    assert caught.value.response is call.response
    assert model.open_streams == 0


async def test_a_total_timeout_fires_mid_stream_though_every_chunk_is_in_time() -> None:
    model = ScriptedModel(
        responses=["x" * 2000], chunk_size=1, usage=False, delay=0.01, timeout=Timeout(idle=5, total=0.3)
    )
    call = model.invoke("go")
    with anyio.fail_after(5), pytest.raises(ProviderTimeout) as caught:
        async for _ in call:
            pass
    assert (caught.value.phase, caught.value.seconds) == ("total", 0.3)
    assert call.response is not None
    assert 0 < len(call.response.text) < 2000
    assert model.open_streams == 0


async def test_the_idle_limit_restarts_with_every_chunk() -> None:
    # Forty chunks 10 ms apart take longer than the idle limit in all, never between two of them.
    model = ScriptedModel(
        responses=["x" * 40], chunk_size=1, usage=False, delay=0.01, timeout=Timeout(idle=0.25)
    )
    with anyio.fail_after(10):
        response = await model.invoke("go")
    assert response.text == "x" * 40
    assert not response.incomplete


async def test_an_idle_timeout_interrupts_a_read_waiting_inside_its_own_cancel_scope() -> None:
    model = _waits_on_event(Timeout(idle=0.2))
    call = model.invoke("go")
    with anyio.fail_after(5), pytest.raises(ProviderTimeout) as caught:
        await _texts(call)
    assert caught.value.phase == "idle"
    assert call.response is not None
    assert call.response.text == TEXT[:3]
    assert model.open_streams == 0


@pytest.mark.parametrize("limits", [None, Timeout(idle=30, total=60)], ids=["no timeout", "timeouts"])
async def test_a_stop_from_another_task_while_the_read_waits_on_an_event(limits: Timeout | None) -> None:
    model = _waits_on_event(limits)
    call = model.invoke("go")
    seen: list[str] = []
    three = anyio.Event()

    async def consume() -> None:
        async for chunk in call:
            if chunk.type == "text":
                seen.append(chunk.data)
                if len(seen) == 3:
                    three.set()

    with anyio.fail_after(5):
        async with no_task_left(), anyio.create_task_group() as group:
            group.start_soon(consume)
            await three.wait()
            await anyio.wait_all_tasks_blocked()  # the consumer waits in the read now
            await call.aclose()
    assert seen == list(TEXT[:3])
    assert call.response is not None
    assert (call.response.incomplete, call.response.finish_reason) == (True, "cancelled")
    assert model.open_streams == 0


async def test_a_stopped_call_with_timeouts_raises_no_timeout_later() -> None:
    model = _stalls_at(2)
    model.timeout = Timeout(idle=0.1, total=0.2)
    call = model.invoke("go")
    async with anyio.create_task_group() as group:
        group.start_soon(_texts, call)
        await anyio.sleep(0.05)
        await call.aclose()
        await anyio.sleep(0.3)  # past both limits: nothing may fire into this task or the consumer
    assert call.response is not None
    assert call.response.finish_reason == "cancelled"


async def test_a_consumer_cancelled_while_the_read_waits_is_cancelled_not_timed_out() -> None:
    model = _waits_on_event(Timeout(idle=30, total=60))
    call = model.invoke("go")
    seen: list[str] = []
    with anyio.fail_after(5):
        with anyio.move_on_after(0.2) as scope:
            async for chunk in call:
                seen.append(chunk.data)
    assert scope.cancelled_caught
    assert seen == list(TEXT[:3])
    assert call.response is not None
    assert call.response.finish_reason == "cancelled"
    assert model.open_streams == 0
    with anyio.fail_after(5):  # the task can still wait, and be cancelled, as before
        with anyio.move_on_after(0.01) as again:
            await anyio.sleep(1)
    assert again.cancelled_caught


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_cancellation_counts_are_left_balanced_after_a_timeout_and_a_stop(
    anyio_backend: str,
) -> None:
    # asyncio.timeout() and TaskGroup tell their own cancellation by the task's cancel count; an
    # interrupt that cancelled the task without taking it back would turn the next timeout into a
    # bare CancelledError.
    import asyncio

    task = asyncio.current_task()
    assert task is not None
    model = _waits_on_event(Timeout(idle=0.1))
    with pytest.raises(ProviderTimeout):
        await model.invoke("go")
    assert task.cancelling() == 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)


async def _rest(call: ModelCall, outcome: list[BaseException | None]) -> None:
    try:
        await call  # the rest of the chunks
        outcome.append(None)
    except ProviderTimeout as error:
        outcome.append(error)


async def test_a_call_read_on_by_another_task_times_out_and_stops_in_that_task() -> None:
    # The first chunks are read in one task, the rest in another (a hand-off, as `partials()` or an
    # await after a few `anext()`s do): a timeout or a stop must reach the task that waits now,
    # and leave the first one alone.
    for stop in (False, True):
        model = _waits_on_event(Timeout(idle=0.2))
        call = model.invoke("go")
        first = [(await call.__anext__()).data for _ in range(2)]
        outcome: list[BaseException | None] = []
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(_rest, call, outcome)
                if stop:
                    await anyio.wait_all_tasks_blocked()
                    await call.aclose()
                await anyio.sleep(0.4)  # past the idle limit: only the reading task may see it
        assert first == ["a", "b"]
        assert call.response is not None
        if stop:
            assert outcome == [None]
            assert call.response.finish_reason == "cancelled"
        else:
            assert isinstance(outcome[0], ProviderTimeout)
            assert outcome[0].phase == "idle"
        assert call.response.text == TEXT[:3]
