"""API keys and rate limits: with keys configured, every request needs one, as ``Authorization:
Bearer <key>`` (the OpenAI clients) or ``x-api-key: <key>`` (the Anthropic clients); ``/healthz`` and
the playground page need none. Keys are compared in constant time and never written to a log or an
error. With a rate limit, each key (each client address, without keys) may make that many
requests in a moving window; one more is a 429 with ``retry-after``."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable

from lionflow.errors import ConfigurationError, MissingDependency
from lionflow.serve._sse import Receive, Scope, Send

# The health check and the playground (a page and its two files; it asks for a key when the API needs one).
OPEN_PATHS = frozenset({"/healthz", "/", "/playground/playground.css", "/playground/playground.js"})
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _digest(key: str) -> bytes:
    # Equal-length digests, so that the comparison takes as long whatever the key's length.
    return hashlib.sha256(key.encode()).digest()


def _presented(scope: Scope) -> str | None:
    headers: dict[bytes, bytes] = dict(scope.get("headers") or ())
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return key or None


def _refusal(path: str, message: str, *, status: int = 401) -> bytes:
    if path.startswith("/v1/messages"):
        kind = "authentication_error" if status == 401 else "rate_limit_error"
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    kind, code = (
        ("invalid_request_error", "invalid_api_key") if status == 401 else ("requests", "rate_limit_exceeded")
    )
    error = {"message": message, "type": kind, "param": None, "code": code}
    return json.dumps({"error": error}).encode()


async def _refuse(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [(b"content-type", b"application/json"), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Gate:
    """ASGI middleware that refuses a request without one of `keys` (401), or over `limit` (429),
    in the shape of the API its path belongs to. Either may be None: no keys, no limit."""

    def __init__(self, app: ASGIApp, *, keys: Iterable[str] | None, limit: RateLimit | None) -> None:
        self.app = app
        self._digests: list[bytes] | None = None
        if keys is not None:
            keys = list(keys)
            if not keys or any(not isinstance(key, str) or not key for key in keys):
                raise ConfigurationError("api_keys must be non-empty strings")
            self._digests = [_digest(key) for key in keys]
        self._limit = limit

    def _match(self, presented: str) -> int | None:
        """The position of the key `presented` is, or None."""
        assert self._digests is not None
        given = _digest(presented)
        # Every key is compared, so that the time taken does not say which one matched.
        matches = [hmac.compare_digest(given, digest) for digest in self._digests]
        return matches.index(True) if any(matches) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        client = scope.get("client")
        who = f"address {client[0] if client else '?'}"
        if self._digests is not None:
            presented = _presented(scope)
            position = None if presented is None else self._match(presented)
            if position is None:
                message = (
                    "this server needs an API key: send Authorization: Bearer <key> or x-api-key: <key>"
                    if presented is None
                    else "the API key is not valid for this server"
                )
                await _refuse(send, 401, _refusal(path, message), [(b"www-authenticate", b"Bearer")])
                return
            who = f"key {position}"  # (the key's position, never the key)
        if self._limit is not None:
            wait = self._limit.hit(who)
            if wait is not None:
                message = f"rate limit of {self._limit} reached: try again in {wait} s"
                body = _refusal(path, message, status=429)
                await _refuse(send, 429, body, [(b"retry-after", str(wait).encode())])
                return
        await self.app(scope, receive, send)


class RateLimit:
    """A limit such as ``"60/minute"`` or ``"10/second;1000/day"`` (the `limits` library's notation),
    counted per client in a moving window, in this process's memory."""

    def __init__(self, spec: str) -> None:
        try:
            from limits import parse_many, storage, strategies
        except ImportError as exc:
            raise MissingDependency("server", "limits", "server", what="rate limits") from exc
        try:
            self._items = parse_many(spec)
        except ValueError:
            raise ConfigurationError(
                f"rate limit {spec!r}: expected counts per period, such as '60/minute' or "
                "'10/second;1000/day'"
            ) from None
        self._spec = spec
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())

    def __str__(self) -> str:
        return self._spec

    def hit(self, who: str) -> int | None:
        """Count a request of `who`; None if it is within every limit, else the whole seconds until
        it would be."""
        refused = [item for item in self._items if not self._limiter.hit(item, who)]
        if not refused:
            return None
        reset = max(self._limiter.get_window_stats(item, who).reset_time for item in refused)
        return max(1, math.ceil(reset - time.time()))
