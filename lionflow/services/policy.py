"""Per-model call policies: timeouts, retries with backoff, and the requests-per-minute limiter."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

import anyio

from lionflow.errors import ConfigurationError, ProviderError, RateLimitError

__all__ = ["RateLimiter", "RetryPolicy", "Timeout", "check_count", "check_seconds"]


def check_count(value: object, name: str, *, minimum: int) -> int:
    """`value` if it is an integer of at least `minimum` (a bool is not); else ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return value


def check_seconds(value: object, name: str, *, positive: bool = False, optional: bool = False) -> None:
    """ConfigurationError unless `value` is a number of seconds, >= 0 (> 0 when `positive`), or None
    when `optional`. NaN is refused: every comparison with it is false, so it would never run out."""
    if value is None and optional:
        return
    if (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and (value > 0 if positive else value >= 0)
    ):
        return
    expected = "a positive number of seconds" if positive else "a number of seconds >= 0"
    if optional:
        expected += " or None"
    raise ConfigurationError(f"{name} must be {expected}, not {value!r}")


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
            check_seconds(getattr(self, phase), f"Timeout.{phase}", positive=True, optional=True)

    @classmethod
    def of(cls, value: float | Timeout | None) -> Timeout:
        if value is None:
            return cls()
        if isinstance(value, Timeout):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigurationError(
                f"timeout must be a positive number of seconds or a Timeout, not {value!r}"
            )
        seconds = float(value)
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
        check_seconds(self.initial_delay, "initial_delay")
        check_seconds(self.max_delay, "max_delay")
        check_seconds(self.max_retry_after, "max_retry_after")
        multiplier = self.multiplier
        if isinstance(multiplier, bool) or not isinstance(multiplier, int | float) or not multiplier >= 1:
            raise ConfigurationError(f"multiplier must be a number >= 1, not {multiplier!r}")

    def delay(self, attempt: int, error: ProviderError) -> float | None:
        """Seconds to wait before retry `attempt` (0-based), or None when the error asks for too long."""
        ceiling = min(self.max_delay, self.initial_delay * self.multiplier**attempt)
        wait = random.uniform(ceiling / 2, ceiling)
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            wait = max(wait, error.retry_after)
        return wait


class RateLimiter:
    """At most `limit` request starts in any sliding window of `per` seconds.

    Waiters are served in arrival order; a request waits only as long as the window requires.
    """

    def __init__(self, limit: int, *, per: float = 60.0) -> None:
        self.limit = check_count(limit, "requests_per_minute", minimum=1)
        check_seconds(per, "per", positive=True)
        self.per = per
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
