"""Per-model call policies: timeouts, retries with backoff, and the requests-per-minute limiter."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

import anyio

from lionflow.errors import ConfigurationError, ProviderError, RateLimitError

__all__ = ["RateLimiter", "RetryPolicy", "Timeout"]


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

    @classmethod
    def of(cls, value: float | Timeout | None) -> Timeout:
        if value is None:
            return cls()
        if isinstance(value, Timeout):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
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
        if self.max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, not {self.max_retries}")

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
        if limit < 1:
            raise ConfigurationError(f"requests_per_minute must be >= 1, not {limit}")
        self.limit = limit
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
