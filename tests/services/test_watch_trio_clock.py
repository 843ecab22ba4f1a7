"""Idle and total timeouts fire on time whatever clock the event loop runs.

On trio with its own system clock the read watch reads ``time.perf_counter`` itself (cheaper per
chunk than ``trio.current_time``) and converts its deadlines to trio's time where its timer sleeps;
any other clock (trio's MockClock, a clock of one's own) is read through trio. These tests pin what a
user sees of both: a stalled stream times out with the right phase, neither before its limit nor
long after it, with the real clock (on both backends) and with a MockClock that jumps (trio).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest
import trio
import trio.testing

from lionflow import Timeout
from lionflow.errors import ProviderTimeout
from lionflow.services.call import ModelCall
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio

TEXT = "abcdefghij"  # ten text chunks of one character


def _stalls_at(position: int, stall: float, timeout: Timeout) -> ScriptedModel:
    """Chunks at once until `position`, whose read then waits `stall` seconds."""
    return ScriptedModel(
        responses=[TEXT],
        chunk_size=1,
        usage=False,
        delay=lambda at: stall if at == position else 0.0,
        timeout=timeout,
    )


async def _timed_out(call: ModelCall) -> ProviderTimeout:
    with pytest.raises(ProviderTimeout) as caught:
        async for _ in call:
            pass
    return caught.value


async def test_an_idle_timeout_on_the_real_clock_fires_after_its_limit_not_before() -> None:
    model = _stalls_at(4, 30.0, Timeout(idle=0.2))
    call = model.invoke("go")
    with anyio.fail_after(5):
        started = anyio.current_time()
        error = await _timed_out(call)
        waited = anyio.current_time() - started
    assert (error.phase, error.seconds) == ("idle", 0.2)
    assert waited >= 0.2
    assert call.response is not None
    assert call.response.text == TEXT[:4]
    assert model.open_streams == 0


async def test_a_total_timeout_on_the_real_clock_fires_after_its_limit_not_before() -> None:
    # Every chunk is in time for the idle limit; the total one ends the call mid-stream.
    model = ScriptedModel(
        responses=["x" * 2000], chunk_size=1, usage=False, delay=0.01, timeout=Timeout(idle=5, total=0.3)
    )
    with anyio.fail_after(5):
        started = anyio.current_time()
        call = model.invoke("go")
        error = await _timed_out(call)
        waited = anyio.current_time() - started
    assert (error.phase, error.seconds) == ("total", 0.3)
    assert waited >= 0.3
    assert call.response is not None
    assert 0 < len(call.response.text) < 2000
    assert model.open_streams == 0


def _on_mock_clock(body: Callable[[], Awaitable[float]]) -> float:
    """Run `body` under trio with a MockClock that jumps whenever every task waits; what it returns
    is read on that clock, so a limit of minutes is checked in no time at all."""
    return trio.run(body, clock=trio.testing.MockClock(autojump_threshold=0))


def test_an_idle_timeout_on_a_mock_clock_fires_at_its_limit_on_that_clock() -> None:
    model = _stalls_at(4, 1000.0, Timeout(idle=30))

    async def body() -> float:
        call = model.invoke("go")
        started = trio.current_time()
        error = await _timed_out(call)
        assert (error.phase, error.seconds) == ("idle", 30)
        assert call.response is not None
        assert call.response.text == TEXT[:4]
        return trio.current_time() - started

    assert 30 <= _on_mock_clock(body) < 31
    assert model.open_streams == 0


def test_a_total_timeout_on_a_mock_clock_fires_at_its_limit_on_that_clock() -> None:
    # After the first, chunks come a (mock) second apart, each in time for the idle limit; the total
    # limit ends the call.
    model = ScriptedModel(
        responses=["x" * 2000],
        chunk_size=1,
        usage=False,
        delay=lambda at: 1.0 if at else 0.0,
        timeout=Timeout(idle=5, total=50),
    )

    async def body() -> float:
        started = trio.current_time()
        call = model.invoke("go")
        error = await _timed_out(call)
        assert (error.phase, error.seconds) == ("total", 50)
        assert call.response is not None
        assert 40 < len(call.response.text) <= 51
        return trio.current_time() - started

    assert 49.99 <= _on_mock_clock(body) < 51
    assert model.open_streams == 0
