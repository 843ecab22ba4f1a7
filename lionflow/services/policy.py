"""Per-model call policies: timeouts, retries with backoff, and the requests-per-minute limiter."""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Literal, overload

import anyio

from lionflow.errors import ConfigurationError, ProviderError, RateLimitError


def check_count(value: object, name: str, *, minimum: int) -> int:
    """`value` if it is an integer of at least `minimum` (a bool is not); else ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return value


def _shown(value: object) -> str:
    # An integer of hundreds of digits would fill the message; its size is what matters.
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    return repr(value)


def _finite(value: float, name: str, expected: str, *, hint: str = "") -> float:
    """`value` as a float, or ConfigurationError when no finite float holds it (``inf``, ``10**400``):
    a wait that never ends, or one that overflows only when a retry or a deadline computes with it."""
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ConfigurationError(f"{name} must be a finite {expected}, not {_shown(value)}{hint}")
    return seconds


@overload
def check_seconds(
    value: object, name: str, *, positive: bool = ..., optional: Literal[False] = ...
) -> float: ...
@overload
def check_seconds(value: object, name: str, *, positive: bool = ..., optional: bool) -> float | None: ...
def check_seconds(
    value: object, name: str, *, positive: bool = False, optional: bool = False
) -> float | None:
    """`value` as a float if it is a finite number of seconds, >= 0 (> 0 when `positive`), or None
    when `optional`; else ConfigurationError. NaN is refused: every comparison with it is false,
    so it would never run out; so is anything a float cannot hold or that is infinite."""
    if value is None and optional:
        return None
    if (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and (value > 0 if positive else value >= 0)
    ):
        return _finite(value, name, "number of seconds", hint=" (None disables it)" if optional else "")
    expected = "a positive number of seconds" if positive else "a number of seconds >= 0"
    if optional:
        expected += " or None"
    raise ConfigurationError(f"{name} must be {expected}, not {_shown(value)}")


@dataclass(frozen=True, slots=True)
class Timeout:
    """Timeouts of one call, in seconds; None disables one.

    - `connect`: until the provider has accepted the request (the HTTP response started).
    - `first_chunk`: from then until the first chunk.
    - `idle`: the longest gap between two chunks.
    - `total`: the whole call, retries included.

    Each raises `ProviderTimeout` with its `phase`. `iModel(timeout=30)` means
    ``Timeout(connect=30, first_chunk=30, idle=30)``: no limit on a long, steadily streaming reply.
    """

    connect: float | None = None
    first_chunk: float | None = None
    idle: float | None = None
    total: float | None = None

    def __post_init__(self) -> None:
        for phase in ("connect", "first_chunk", "idle", "total"):
            seconds = check_seconds(getattr(self, phase), f"Timeout.{phase}", positive=True, optional=True)
            object.__setattr__(self, phase, seconds)  # frozen: the checked float replaces what was given

    @classmethod
    def of(cls, value: float | Timeout | None) -> Timeout:
        if value is None:
            return cls()
        if isinstance(value, Timeout):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigurationError(
                f"timeout must be a positive number of seconds or a Timeout, not {_shown(value)}"
            )
        seconds = _finite(value, "timeout", "number of seconds")
        return cls(connect=seconds, first_chunk=seconds, idle=seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter for retryable errors.

    Attempt ``n`` (0-based) waits a random time between half and all of
    ``min(max_delay, initial_delay * multiplier**n)``. A provider's ``retry-after`` is honoured
    when it asks for longer, up to `max_retry_after` (a longer wait raises instead of retrying).
    Retries happen only before the first chunk reached the caller.
    """

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 20.0
    multiplier: float = 2.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        check_count(self.max_retries, "max_retries", minimum=0)
        # frozen: the checked floats replace what was given
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            object.__setattr__(self, name, check_seconds(getattr(self, name), name))
        multiplier = self.multiplier
        if isinstance(multiplier, bool) or not isinstance(multiplier, int | float) or not multiplier >= 1:
            raise ConfigurationError(f"multiplier must be a number >= 1, not {_shown(multiplier)}")
        object.__setattr__(self, "multiplier", _finite(multiplier, "multiplier", "number >= 1"))

    def delay(self, attempt: int, error: ProviderError) -> float | None:
        """Seconds to wait before retry `attempt` (0-based), or None when the error asks for too long."""
        ceiling = self._ceiling(attempt)
        wait = random.uniform(ceiling / 2, ceiling)
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            wait = max(wait, error.retry_after)
        return wait

    def _ceiling(self, attempt: int) -> float:
        """``min(max_delay, initial_delay * multiplier**attempt)``, for any attempt: the power alone
        leaves float range (OverflowError) long before attempts run out, so exponents compare in logs."""
        initial, ceiling = self.initial_delay, self.max_delay
        if initial == 0 or initial >= ceiling or self.multiplier == 1:
            return min(initial, ceiling)
        # The attempt from which the delay is the ceiling (int against float: exact, no overflow).
        if attempt >= (math.log(ceiling) - math.log(initial)) / math.log(self.multiplier):
            return ceiling
        try:
            return min(ceiling, initial * self.multiplier**attempt)
        except OverflowError:  # a tiny initial_delay: the power is past float range, the product is not
            return min(ceiling, math.exp(math.log(initial) + attempt * math.log(self.multiplier)))


class RateLimiter:
    """At most `limit` request starts in any sliding window of `per` seconds.

    Waiters are served in arrival order; a request waits only as long as the window requires.
    """

    def __init__(self, limit: int, *, per: float = 60.0) -> None:
        self.limit = check_count(limit, "requests_per_minute", minimum=1)
        self.per = check_seconds(per, "per", positive=True)
        self._starts: deque[float] = deque()
        self._lock = anyio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: anyio locks are fair
            while True:
                now = anyio.current_time()
                while self._starts and now - self._starts[0] >= self.per:
                    self._starts.popleft()
                if len(self._starts) < self.limit:
                    self._starts.append(now)
                    return
                await anyio.sleep(self._starts[0] + self.per - now)
