"""API keys: with keys configured, every request needs one, as ``Authorization: Bearer <key>`` (the
OpenAI clients) or ``x-api-key: <key>`` (the Anthropic clients); ``/healthz`` and the playground page
need none. Keys are compared in constant time and never written to a log or an error."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Iterable

from lionflow.errors import ConfigurationError
from lionflow.serve._sse import Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthz", "/"})
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


def _refusal(path: str, message: str) -> bytes:
    if path.startswith("/v1/messages"):
        return json.dumps(
            {"type": "error", "error": {"type": "authentication_error", "message": message}}
        ).encode()
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
    return json.dumps({"error": error}).encode()


class KeyCheck:
    """ASGI middleware that refuses a request without one of `keys` (401, in the shape of the API
    the path belongs to)."""

    def __init__(self, app: ASGIApp, *, keys: Iterable[str]) -> None:
        self.app = app
        keys = list(keys)
        digests = [_digest(key) for key in keys]
        if not digests or any(not isinstance(key, str) or not key for key in keys):
            raise ConfigurationError("api_keys must be non-empty strings")
        self._digests = digests

    def _allowed(self, presented: str) -> bool:
        given = _digest(presented)
        # Every key is compared, so that the time taken does not say which one matched.
        return sum(hmac.compare_digest(given, digest) for digest in self._digests) > 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            presented = _presented(scope)
            if presented is None or not self._allowed(presented):
                message = (
                    "this server needs an API key: send Authorization: Bearer <key> or x-api-key: <key>"
                    if presented is None
                    else "the API key is not valid for this server"
                )
                body = _refusal(scope["path"], message)
                headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
