"""Every error lionflow raises, under one root.

::

    LionflowError
    ├── ConfigurationError (ValueError)      bad arguments, found before any request is sent
    │   ├── UnknownProviderError             provider="..." names no registered provider
    │   └── MissingCredentials               no API key given and none in the environment
    ├── MissingDependency (ImportError)      an optional package is not installed: names the extra
    ├── ProviderError                        the provider failed; `.retryable`, `.response`
    │   ├── AuthenticationError              401 / 403
    │   ├── RateLimitError                   429; `.retry_after` in seconds when the provider says
    │   ├── ProviderTimeout (TimeoutError)   `.phase`: connect, first_chunk, idle or total
    │   ├── ProviderConnectionError          the connection could not be made or was lost
    │   ├── ProviderHTTPError                any other HTTP status; `.status_code`
    │   ├── StreamInterrupted                an error arrived in the middle of a stream
    │   └── StructuredOutputError (ValueError)  the reply is not the JSON ``response_format`` asked for
    ├── StreamError                          a stream is used out of turn, or its bytes are broken
    │   ├── StreamConsumed                   a call's chunks were already iterated
    │   ├── StreamClosed                     the call was closed before it was iterated
    │   ├── StreamTruncated                  a typed stream ended inside a frame or before a part it owes
    │   ├── StreamProtocolError              a typed stream's frames, or the reads of them, are out of order
    │   └── StreamValidationError (ValueError)  a typed stream's frame does not validate; `.frame_index`
    ├── StoreError                           a store could not be opened, read or written; names the session
    │   └── StoreClosed                      the store was closed; open a new one
    ├── FlowValidationError (ValueError)     a workflow is wrong before anything runs
    ├── FlowError                            a ``fail_fast`` flow stopped at a failure; `.results`
    ├── PartialJSONError (ValueError)        streamed text is not JSON; `.position`
    ├── ToonDecodeError (ValueError)         text is not TOON (spec v4.0); `.line`, `.column` (1-based)
    ├── GuardViolation                       a guard refused a request or stopped an answer; `.guard`
    └── ScriptedModelExhausted               a ScriptedModel was called more often than it has replies

Whenever a `ProviderError` ends a call, `.response` holds the `Response` assembled from what had
arrived (``incomplete=True``), so nothing the provider sent is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from lionflow.operations import FlowResults
    from lionflow.services.response import Response

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "FlowError",
    "FlowValidationError",
    "LionflowError",
    "MissingCredentials",
    "MissingDependency",
    "PartialJSONError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderTimeout",
    "RateLimitError",
    "ScriptedModelExhausted",
    "StoreClosed",
    "StoreError",
    "StreamClosed",
    "StreamConsumed",
    "StreamError",
    "StreamInterrupted",
    "StreamProtocolError",
    "StreamTruncated",
    "StreamValidationError",
    "StructuredOutputError",
    "TimeoutPhase",
    "ToonDecodeError",
    "UnknownProviderError",
]

TimeoutPhase = Literal["connect", "first_chunk", "idle", "total"]

# HTTP statuses worth a second try: the request may succeed unchanged a moment later.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})


class LionflowError(Exception):
    """The root of every error lionflow raises."""


class ConfigurationError(LionflowError, ValueError):
    """An argument or setting is wrong; raised before any request is sent."""


class UnknownProviderError(ConfigurationError):
    """`provider=` names no registered provider."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown provider {name!r}; known providers: {', '.join(known)}")


class MissingCredentials(ConfigurationError):
    """The provider needs an API key and none was given or found in the environment."""


class MissingDependency(LionflowError, ImportError):
    """A provider's SDK (or another optional package, such as the server's) is not installed. The
    message names the extra that installs it."""

    def __init__(self, provider: str, package: str, extra: str | None, *, what: str | None = None) -> None:
        self.provider = provider
        self.package = package
        self.extra = extra
        hint = f'pip install "lionflow[{extra}]"' if extra else f"pip install {package}"
        needs = what or f"provider {provider!r}"
        super().__init__(f"{needs} needs the {package!r} package, which is not installed: {hint}")


class ProviderError(LionflowError):
    """The provider failed.

    `retryable` says whether the same request may succeed if sent again. `response` is the partial
    `Response` assembled from what had arrived when the error ended a call, or None.
    """

    retryable: bool = False

    def __init__(self, message: str, *, provider: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.response: Response | None = None
        if retryable is not None:
            self.retryable = retryable


class AuthenticationError(ProviderError):
    """The provider rejected the credentials (HTTP 401 or 403). Check the API key."""


class RateLimitError(ProviderError):
    """The provider is rate limiting (HTTP 429). `retry_after` is its advised wait, in seconds."""

    retryable = True

    def __init__(
        self,
        message: str = "rate limited",
        *,
        provider: str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, provider=provider, retryable=retryable)
        self.retry_after = retry_after


class ProviderTimeout(ProviderError, TimeoutError):
    """A timeout ran out. `phase` says which one: connect, first_chunk, idle or total."""

    def __init__(
        self, phase: TimeoutPhase, seconds: float, *, provider: str | None = None, detail: str = ""
    ) -> None:
        what = {
            "connect": "connecting to the provider",
            "first_chunk": "waiting for the first chunk",
            "idle": "waiting for the next chunk",
            "total": "the whole call",
        }[phase]
        message = f"timed out after {seconds:g}s {what} ({phase} timeout)"
        if detail:
            message = f"{message}: {detail}"
        # A connect or first-chunk timeout happens before anything reached the caller: worth a retry.
        super().__init__(message, provider=provider, retryable=phase in ("connect", "first_chunk"))
        self.phase: TimeoutPhase = phase
        self.seconds = seconds


class ProviderConnectionError(ProviderError):
    """The connection to the provider could not be made, or was lost."""

    retryable = True


class ProviderHTTPError(ProviderError):
    """The provider answered with an HTTP error status. 5xx and overloaded are retryable."""

    def __init__(
        self,
        status_code: int,
        message: str = "",
        *,
        provider: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(
            f"HTTP {status_code}: {message}" if message else f"HTTP {status_code}",
            provider=provider,
            retryable=status_code in RETRYABLE_STATUS if retryable is None else retryable,
        )
        self.status_code = status_code


class StreamInterrupted(ProviderError):
    """An error arrived in the middle of a stream.

    `.response` is the partial `Response` (``incomplete=True``) with everything received before the
    error. `retryable` is set by the provider adapter from the error's kind; lionflow only retries when
    no chunk had reached the caller yet.
    """


class StructuredOutputError(ProviderError, ValueError):
    """The model's reply is not the JSON that ``response_format`` asked for.

    `.response` holds the reply as received (its `text`, usage and so on); `__cause__` is the JSON
    parser's error. A reply that is JSON but does not validate against a pydantic model raises
    pydantic's own `ValidationError` instead.
    """


class StreamError(LionflowError):
    """A stream was used in a way its state does not allow (a model call's chunks, a typed stream's
    reads), or a typed stream's bytes are not a valid stream (`lionflow.streams`)."""


class StreamConsumed(StreamError):
    """The call's chunks were already iterated; a call streams once. Use `.response` for the result."""


class StreamClosed(StreamError):
    """The call was closed before its chunks were read."""


class StreamTruncated(StreamError):
    """A typed stream (`lionflow.streams`) ended too early: inside a frame, before a header or footer
    its types declare, or without its end frame when the reader was made with ``require_end=True``.
    `frame_index` is the 0-based position of the frame that is cut or missing."""

    def __init__(self, message: str, *, frame_index: int | None = None) -> None:
        super().__init__(message)
        self.frame_index = frame_index


class StreamProtocolError(StreamError):
    """A typed stream (`lionflow.streams`) breaks its format or its order: an unknown kind byte, a
    length over the reader's limit, a frame out of order (an item after the footer, a second header,
    anything after the end frame, a header or footer its types do not declare), or reads out of order
    (`read_items()` before a declared `read_header()`, reading twice). `frame_index` is the 0-based
    position of the offending frame, None for a read made out of order."""

    def __init__(self, message: str, *, frame_index: int | None = None) -> None:
        super().__init__(message)
        self.frame_index = frame_index


class StreamValidationError(StreamError, ValueError):
    """A typed stream's frame (`lionflow.streams`) holds JSON that does not validate as its model.
    `frame_index` is the frame's 0-based position in the stream, `kind` is ``"header"``, ``"item"``
    or ``"footer"``; `__cause__` is pydantic's `ValidationError`."""

    def __init__(self, message: str, *, frame_index: int, kind: str) -> None:
        super().__init__(message)
        self.frame_index = frame_index
        self.kind = kind


class FlowValidationError(LionflowError, ValueError):
    """A workflow is invalid (cycle, unknown dependency or model); raised before anything runs."""


class FlowError(LionflowError):
    """A ``fail_fast`` flow stopped at a failure. `__cause__` is the first error; `results` holds
    what completed, with `failed`, `skipped` and `cancelled`."""

    def __init__(self, message: str, *, results: FlowResults) -> None:
        super().__init__(message)
        self.results = results


class StoreError(LionflowError):
    """A store could not be opened, read or written. `session_id` (and `turn`, for a failed turn)
    say what was being stored; `__cause__` is the database's own error."""

    def __init__(self, message: str, *, session_id: str | None = None, turn: str | None = None) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.turn = turn


class StoreClosed(StoreError):
    """The store was closed; open a new one to read or write."""


class PartialJSONError(LionflowError, ValueError):
    """The text is not JSON. `position` is the offset of the offending character in all text fed."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


class ToonDecodeError(LionflowError, ValueError):
    """The text is not TOON (spec v4.0): `line` and `column` (both 1-based) point at the offending
    character, or at the start of the line or header that is wrong."""

    def __init__(self, message: str, *, line: int, column: int = 1) -> None:
        super().__init__(f"{message} (line {line}, column {column})")
        self.message = message
        self.line = line
        self.column = column


class GuardViolation(LionflowError):
    """A guard refused a request (`InputGuard`) or stopped an answer (`OutputGuard` with
    ``on_violation="raise"``). `guard` is its name, `reason` what its check said."""

    def __init__(self, message: str, *, guard: str, reason: str = "") -> None:
        super().__init__(message)
        self.guard = guard
        self.reason = reason


class ScriptedModelExhausted(LionflowError):
    """A ScriptedModel was called more times than it has responses."""
