"""Errors in the shape of the OpenAI API: ``{"error": {"message", "type", "param", "code"}}``.

Bad input is the client's (4xx, never a 500); a provider's failure behind the server is a 502 (its
own rate limit a 429 with ``retry-after``, its timeout a 504), so that a client can tell its own
mistakes from the upstream's.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pydantic_core
from pydantic import ValidationError

from lionflow.errors import (
    ConfigurationError,
    LionflowError,
    ProviderHTTPError,
    ProviderTimeout,
    RateLimitError,
)


class APIError(Exception):
    """An error to answer with: HTTP `status`, an OpenAI-style body, and headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def body_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()


def from_validation(error: ValidationError) -> APIError:
    """A 400 naming the first field that is wrong (its path, dotted, as `param`)."""
    first = error.errors()[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    return APIError(400, f"{param}: {first['msg']}" if param else first["msg"], param=param)


def refuse_non_json_numbers(body: bytes) -> None:
    """A 400 if `body`, read by pydantic, held NaN, Infinity or -Infinity. Pydantic's JSON reader
    takes them (into `Any` fields and fields passed on); JSON has no such numbers, and a provider's
    SDK refuses to send them on: passed, they were the server's 500."""
    try:
        pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:  # the body read with them allowed: so it is one of them
        raise APIError(400, f"the body is not JSON: NaN and Infinity are not JSON numbers ({exc})") from None


def from_lionflow(error: LionflowError) -> APIError:
    """The HTTP error for a lionflow error raised while answering."""
    if isinstance(error, ConfigurationError):
        return APIError(400, str(error))
    if isinstance(error, RateLimitError):
        headers = {}
        if error.retry_after is not None and math.isfinite(error.retry_after):
            headers["retry-after"] = str(max(1, math.ceil(error.retry_after)))
        return APIError(429, str(error), kind="rate_limit_error", code="rate_limit_exceeded", headers=headers)
    if isinstance(error, ProviderTimeout):
        return APIError(504, str(error), kind="timeout_error", code="upstream_timeout")
    if isinstance(error, ProviderHTTPError) and 400 <= error.status_code < 500 and error.status_code != 401:
        # The upstream refused what the client sent: the client's request to fix.
        return APIError(error.status_code, str(error), code="upstream_rejected")
    return APIError(502, str(error), kind="upstream_error", code="upstream_error")


_log = logging.getLogger("lionflow.serve")


def from_exception(error: Exception) -> APIError:
    """The HTTP error for any exception raised while answering: a lionflow error as
    `from_lionflow` says, anything else a 500 that says nothing of its cause (it is logged)."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, LionflowError):
        return from_lionflow(error)
    _log.error("internal error while answering", exc_info=error)
    return APIError(
        500, "the server failed to answer; see its log", kind="server_error", code="internal_error"
    )
