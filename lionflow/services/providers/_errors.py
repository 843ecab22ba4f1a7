"""Mapping HTTP and SDK errors to lionflow's: what every adapter's `_error()` builds on.

The SDKs' HTTP clients (httpx, or the httpx2 fork some SDKs use) are matched by their exceptions'
names, so that this module imports no HTTP library.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

from lionflow.errors import (
    AuthenticationError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    RateLimitError,
    StreamInterrupted,
    TimeoutPhase,
)


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), if present.

    A value that is none of these (a proxy's own text, ``nan``) counts as absent: the error it came
    with must still map to its own class.
    """
    if not headers:
        return None
    millis = _seconds(headers.get("retry-after-ms") or "")
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


def status_error(
    status: int, message: str, *, provider: str, headers: Mapping[str, str] | None = None
) -> ProviderError:
    """The lionflow error for an HTTP error status: 401/403, 429, or any other."""
    if status in (401, 403):
        return AuthenticationError(f"HTTP {status}: {message}", provider=provider)
    if status == 429:
        return RateLimitError(
            f"HTTP 429: {message}", provider=provider, retry_after=retry_after_seconds(headers)
        )
    return ProviderHTTPError(status, message, provider=provider)


def malformed(error: BaseException, provider: str) -> ProviderError:
    """The error for a body or stream event that is not the JSON it should be (a proxy's error
    page sent with status 200, an event cut short); the caller chains `error`."""
    return ProviderError(f"{provider} sent a malformed response: {error}", provider=provider)


def interrupted(error: ProviderError) -> ProviderError:
    """`error`, raised during iteration, as the StreamInterrupted it is (same message, retryability).

    A `ProviderTimeout` stays one: its phase already says that it happened in the stream.
    """
    if isinstance(error, StreamInterrupted | ProviderTimeout):
        return error
    result = StreamInterrupted(error.message, provider=error.provider, retryable=error.retryable)
    result.__cause__ = error.__cause__ or error
    return result


# What the HTTP client (httpx, or the httpx2 fork some SDKs use) names each of its timeouts; the
# client's own exceptions are matched by name so that this module imports no HTTP library.
_HTTP_TIMEOUTS = {
    "ConnectTimeout": "connect",
    "ReadTimeout": "read",
    "WriteTimeout": "write",
    "PoolTimeout": "pool",
}


def _http_timeout(error: BaseException) -> tuple[str, float | None]:
    """Which of the HTTP client's timeouts ran out under `error` (an SDK's timeout error or the
    HTTP client's own), and the seconds the request was given for it."""
    kind = "read"
    seconds: float | None = None
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = _HTTP_TIMEOUTS.get(type(current).__name__, kind)
        try:
            request = getattr(current, "request", None)
        except RuntimeError:  # httpx's way of saying that the error has no request
            request = None
        extensions = getattr(request, "extensions", None)
        settings = extensions.get("timeout") if isinstance(extensions, Mapping) else None
        if isinstance(settings, Mapping) and isinstance(settings.get(kind), int | float):
            seconds = float(settings[kind])
        current = current.__cause__ or current.__context__
    return kind, seconds


def sdk_timeout(error: BaseException, phase: TimeoutPhase, *, provider: str) -> ProviderTimeout:
    """A timeout of the SDK's own (a ``timeout=`` the request was sent with, or its HTTP client's
    default) as the `ProviderTimeout` it is; the caller chains `error`.

    `phase` is where the adapter was waiting: ``connect`` until the provider's answer began (in
    `open()`), ``first_chunk`` reading the stream before any chunk, ``idle`` after one. A connect,
    write or pool timeout means the request never reached the provider: always ``connect``.
    """
    kind, seconds = _http_timeout(error)
    if kind != "read":
        phase = "connect"
    return ProviderTimeout(
        phase,
        math.nan if seconds is None else seconds,
        provider=provider,
        detail=f"the {provider} SDK's {kind} timeout ran out",
    )


def transport_error(error: BaseException, phase: TimeoutPhase, *, provider: str) -> ProviderError:
    """The lionflow error for an exception of the SDK's HTTP client that escaped the SDK (reading an
    error status's body, or a stream): its timeout as a `ProviderTimeout` of `phase`, anything else
    a lost connection (retryable)."""
    if type(error).__name__ in _HTTP_TIMEOUTS:
        return sdk_timeout(error, phase, provider=provider)
    return ProviderConnectionError(f"the connection to {provider} was lost: {error!r}", provider=provider)
