"""Retries, timeouts and limits, as a caller experiences them."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import TypedDict

import anyio
import pytest

from lionflow import (
    AuthenticationError,
    ConfigurationError,
    ProviderHTTPError,
    ProviderTimeout,
    RateLimitError,
    StreamInterrupted,
    Timeout,
)
from lionflow.services.policy import RateLimiter, RetryPolicy
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "hi"}]


class _RetryDelays(TypedDict):
    retry_initial_delay: float
    retry_max_delay: float


FAST_RETRY: _RetryDelays = {"retry_initial_delay": 0.001, "retry_max_delay": 0.002}


# -- retries ---------------------------------------------------------------------------------------


async def test_a_retryable_error_before_the_first_chunk_is_retried() -> None:
    model = ScriptedModel(
        responses=["recovered"], fail_on_open=[ProviderHTTPError(503, "overloaded")], **FAST_RETRY
    )
    call = model.invoke(messages=MESSAGES)
    response = await call
    assert response.text == "recovered"
    assert call.attempts == 2
    assert len(model.requests) == 2


async def test_a_stream_failing_before_any_chunk_is_retried_until_retries_run_out() -> None:
    model = ScriptedModel(responses=["x", "y", "z"], fail_after=0, max_retries=2, **FAST_RETRY)
    call = model.invoke(messages=MESSAGES)
    with pytest.raises(StreamInterrupted):
        await call
    assert call.attempts == 3
    assert len(model.requests) == 3


async def test_no_retry_after_a_chunk_reached_the_caller() -> None:
    model = ScriptedModel(responses=["abcdefghij"], chunk_size=2, fail_after=3, max_retries=5, **FAST_RETRY)
    call = model.invoke(messages=MESSAGES)
    seen: list[str] = []
    with pytest.raises(StreamInterrupted) as caught:
        async for chunk in call:
            seen.append(chunk.data)
    assert seen == ["ab", "cd", "ef"]  # nothing replayed
    assert len(model.requests) == 1
    partial = caught.value.response
    assert partial is not None
    assert partial.incomplete
    assert partial.text == "abcdef"
    assert partial.finish_reason == "error"
    assert "scripted failure" in (partial.error or "")
    assert call.response == partial
    assert model.open_streams == 0


async def test_an_error_that_is_not_retryable_is_raised_at_once() -> None:
    model = ScriptedModel(responses=["never"], fail_on_open=[AuthenticationError("bad key")], **FAST_RETRY)
    with pytest.raises(AuthenticationError, match="bad key"):
        await model.invoke(messages=MESSAGES)
    assert len(model.requests) == 1


async def test_max_retries_zero_disables_retries() -> None:
    model = ScriptedModel(responses=["x"], fail_on_open=[ProviderHTTPError(500)], max_retries=0)
    with pytest.raises(ProviderHTTPError) as caught:
        await model.invoke(messages=MESSAGES)
    assert caught.value.status_code == 500
    assert caught.value.retryable
    assert len(model.requests) == 1


async def test_retry_after_from_a_rate_limit_is_honoured() -> None:
    model = ScriptedModel(
        responses=["ok"], fail_on_open=[RateLimitError("slow down", retry_after=0.25)], **FAST_RETRY
    )
    started = time.monotonic()
    assert (await model.invoke(messages=MESSAGES)).text == "ok"
    assert time.monotonic() - started >= 0.25


async def test_a_retry_after_beyond_the_ceiling_is_raised_not_waited() -> None:
    model = ScriptedModel(
        responses=["ok"], fail_on_open=[RateLimitError("come back tomorrow", retry_after=86400)]
    )
    with anyio.fail_after(2), pytest.raises(RateLimitError) as caught:
        await model.invoke(messages=MESSAGES)
    assert caught.value.retry_after == 86400
    assert len(model.requests) == 1


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling() -> None:
    policy = RetryPolicy(max_retries=10, initial_delay=1.0, max_delay=5.0)
    error = ProviderHTTPError(503)
    for attempt, ceiling in enumerate([1.0, 2.0, 4.0, 5.0, 5.0]):
        delays = {policy.delay(attempt, error) for _ in range(50)}
        assert all(d is not None and ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


def test_backoff_never_overflows_however_many_attempts() -> None:
    error = ProviderHTTPError(503)
    policy = RetryPolicy(max_retries=5000)  # 0.5 s doubling, up to 20 s

    assert 10.0 <= policy.delay(1100, error) <= 20.0  # type: ignore[operator]
    assert 10.0 <= policy.delay(10**400, error) <= 20.0  # type: ignore[operator]
    # a tiny start: the power alone leaves float range long before the delay reaches the ceiling
    tiny = RetryPolicy(initial_delay=1e-300, max_delay=1e300, multiplier=2)
    assert 0 < tiny.delay(1100, error) <= 1e300  # type: ignore[operator]
    assert tiny.delay(5000, error) >= 0.5e300  # type: ignore[operator]
    assert RetryPolicy(initial_delay=0).delay(5000, error) == 0
    assert 0.25 <= RetryPolicy(multiplier=1).delay(10**6, error) <= 0.5  # type: ignore[operator]


# -- timeouts --------------------------------------------------------------------------------------


async def test_idle_timeout_when_chunks_stall() -> None:
    model = ScriptedModel(
        responses=["abcdefgh"],
        chunk_size=2,
        delay=lambda i: 5.0 if i == 3 else 0.0,
        timeout=Timeout(idle=0.1),
    )
    call = model.invoke(messages=MESSAGES)
    seen = []
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        async for chunk in call:
            seen.append(chunk.data)
    assert time.monotonic() - started < 2
    assert caught.value.phase == "idle"
    assert "idle timeout" in str(caught.value)
    assert seen == ["ab", "cd", "ef"]
    assert len(model.requests) == 1  # content was seen: no retry
    assert caught.value.response is not None
    assert caught.value.response.text == "abcdef"
    assert caught.value.response.incomplete
    assert model.open_streams == 0


async def test_first_chunk_timeout_is_retried_then_raised() -> None:
    model = ScriptedModel(
        responses=["a", "b"],
        delay=lambda i: 5.0 if i == 0 else 0.0,
        timeout=Timeout(first_chunk=0.05),
        max_retries=1,
        **FAST_RETRY,
    )
    with pytest.raises(ProviderTimeout) as caught:
        await model.invoke(messages=MESSAGES)
    assert caught.value.phase == "first_chunk"
    assert len(model.requests) == 2
    assert model.open_streams == 0


async def test_connect_timeout() -> None:
    model = ScriptedModel(responses=["a"], connect_delay=5.0, timeout=Timeout(connect=0.05), max_retries=0)
    with pytest.raises(ProviderTimeout) as caught:
        await model.invoke(messages=MESSAGES)
    assert caught.value.phase == "connect"


async def test_total_timeout_bounds_a_steady_stream() -> None:
    model = ScriptedModel(
        responses=["x" * 100], chunk_size=1, delay=0.01, timeout=Timeout(idle=1.0, total=0.2)
    )
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        await model.invoke(messages=MESSAGES)
    assert caught.value.phase == "total"
    assert time.monotonic() - started < 1.0
    assert caught.value.response is not None
    assert 5 < len(caught.value.response.text) < 100


async def test_a_plain_number_timeout_applies_to_each_wait_not_the_whole_call() -> None:
    # 30 chunks 10 ms apart take 0.3 s in all, far over 0.1 s, yet no single wait does.
    model = ScriptedModel(responses=["x" * 30], chunk_size=1, delay=0.01, timeout=0.1)
    assert len((await model.invoke(messages=MESSAGES)).text) == 30


# -- limits ----------------------------------------------------------------------------------------


async def _run_parallel(model: ScriptedModel, calls: int) -> list[str]:
    results: list[str] = []

    async def one() -> None:
        results.append((await model.invoke(messages=MESSAGES)).text)

    async with anyio.create_task_group() as group:
        for _ in range(calls):
            group.start_soon(one)
    return results


async def test_the_concurrency_limit_holds() -> None:
    limited = ScriptedModel(responses=lambda _: "abcdef", chunk_size=1, delay=0.005, max_concurrent=2)
    assert await _run_parallel(limited, 6) == ["abcdef"] * 6
    assert limited.max_open_streams == 2
    # the same load without a limit runs all six at once
    unlimited = ScriptedModel(responses=lambda _: "abcdef", chunk_size=1, delay=0.005)
    await _run_parallel(unlimited, 6)
    assert unlimited.max_open_streams == 6


async def test_a_failed_call_frees_its_concurrency_slot() -> None:
    model = ScriptedModel(responses=lambda _: "abc", fail_after=1, max_concurrent=1, max_retries=0)
    for _ in range(3):
        with pytest.raises(StreamInterrupted):
            await model.invoke(messages=MESSAGES)
    assert model.open_streams == 0
    with anyio.fail_after(1):  # a leaked slot would block here
        with pytest.raises(StreamInterrupted):
            await model.invoke(messages=MESSAGES)


async def test_requests_per_minute_holds_back_the_request_over_the_limit() -> None:
    model = ScriptedModel(responses=lambda _: "ok", requests_per_minute=2)
    finished: list[str] = []

    async def one() -> None:
        finished.append((await model.invoke(messages=MESSAGES)).text)

    with anyio.move_on_after(0.3):
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(one)
    # two requests went out at once; the third waits for the minute's window
    assert finished == ["ok", "ok"]
    assert len(model.requests) == 2


async def test_rate_limiter_spaces_requests_by_the_window() -> None:
    limiter = RateLimiter(2, per=0.2)
    starts = []
    origin = time.monotonic()
    for _ in range(5):
        await limiter.acquire()
        starts.append(time.monotonic() - origin)
    assert starts[1] < 0.05
    assert 0.19 <= starts[2] < 0.35
    assert 0.39 <= starts[4] < 0.6


# -- the policies' own arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: Timeout(connect="5"), "Timeout.connect must be a positive number of seconds or None"),  # type: ignore[arg-type]  # the wrong kind, on purpose
        (lambda: Timeout(idle=-1), "Timeout.idle must be a positive number of seconds or None, not -1"),
        (lambda: Timeout(total=0), "Timeout.total must be a positive number"),
        (lambda: Timeout(first_chunk=True), "Timeout.first_chunk must be a positive number"),
        (lambda: RetryPolicy(max_retries="2"), "max_retries must be an integer >= 0, not '2'"),  # type: ignore[arg-type]  # the wrong kind, on purpose
        (lambda: RetryPolicy(max_retries=-1), "max_retries must be an integer >= 0, not -1"),
        (lambda: RetryPolicy(initial_delay=-0.5), "initial_delay must be a number of seconds >= 0"),
        (lambda: RetryPolicy(max_delay="1"), "max_delay must be a number of seconds >= 0"),  # type: ignore[arg-type]  # the wrong kind, on purpose
        (lambda: RetryPolicy(multiplier=0.5), "multiplier must be a number >= 1"),
        (lambda: RetryPolicy(max_retry_after=None), "max_retry_after must be a number of seconds >= 0"),  # type: ignore[arg-type]  # the wrong kind, on purpose
        (lambda: RateLimiter("60"), "requests_per_minute must be an integer >= 1, not '60'"),  # type: ignore[arg-type]  # the wrong kind, on purpose
        (lambda: RateLimiter(5, per=0), "per must be a positive number of seconds"),
        # seconds a float cannot hold, or that never end: refused, not left to fail at first use
        (lambda: Timeout(connect=10**400), "Timeout.connect must be a finite number of seconds"),
        (lambda: Timeout(idle=math.inf), "Timeout.idle must be a finite number of seconds, not inf"),
        (lambda: Timeout.of(10**400), "timeout must be a finite number of seconds, not an integer of 401"),
        (lambda: Timeout.of(math.inf), "timeout must be a finite number of seconds"),
        (lambda: RetryPolicy(initial_delay=10**400), "initial_delay must be a finite number of seconds"),
        (lambda: RetryPolicy(initial_delay=math.inf), "initial_delay must be a finite number of seconds"),
        (lambda: RetryPolicy(max_delay=math.inf), "max_delay must be a finite number of seconds"),
        (lambda: RetryPolicy(max_retry_after=10**400), "max_retry_after must be a finite number"),
        (lambda: RetryPolicy(multiplier=math.inf), "multiplier must be a finite number >= 1, not inf"),
        (lambda: RetryPolicy(multiplier=10**400), "multiplier must be a finite number >= 1"),
        (lambda: RateLimiter(5, per=math.inf), "per must be a finite number of seconds"),
    ],
)
def test_policy_arguments_of_the_wrong_type_say_what_was_expected(
    build: Callable[[], object], fragment: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(fragment)):
        build()


def test_seconds_are_kept_as_floats() -> None:
    assert Timeout(connect=5, total=1).connect == 5.0
    assert all(isinstance(seconds, float) for seconds in (Timeout(connect=5).connect, Timeout.of(2).idle))
    policy = RetryPolicy(initial_delay=1, max_delay=3, multiplier=2, max_retry_after=60)
    fields = (policy.initial_delay, policy.max_delay, policy.multiplier, policy.max_retry_after)
    assert all(isinstance(value, float) for value in fields)
    assert isinstance(RateLimiter(1, per=1).per, float)
