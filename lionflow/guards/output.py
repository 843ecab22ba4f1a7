"""Guards: checks of what a model is asked (`InputGuard`) and of what it streams (`OutputGuard`).

An output guard checks the answer's text in windows of characters, whatever the provider's
chunking: each check sees `window` new characters and the `overlap` characters before them (a
`Window`: a str with its `start` and `end` in the answer); the last, shorter window is checked at the
end. Each guard checks its windows in order, one at a time (so a check may keep state, as
`max_length` does), in a task of its own that runs while the answer streams: the provider is read
at its own speed, and no check runs on the path of a chunk.

``mode="hold"``: text reaches the caller only once the checks of every hold guard covering it have
passed, and the last `overlap` characters of a window wait for the next one: every span of up to
``overlap + 1`` characters lies whole in one checked window before any of it is released, so a
blocked word no longer than that never reaches a consumer, not even its beginning.
``mode="release_first"``: text is released as it arrives and checked behind it; a violation stops
the stream within one window.

On a violation the provider stream is closed and the answer ends with a ``finish`` chunk,
``finish_reason="content_filter"`` and ``metadata["guard"] = {"name", "reason"}``; held text is never
released. ``on_violation="raise"`` raises `GuardViolation` instead. Text is what is checked:
reasoning, tool calls and usage pass through, in their place in the stream.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import anyio.to_thread

from lionflow.errors import ConfigurationError, GuardViolation


@dataclass(frozen=True, slots=True)
class GuardResult:
    """What a check says: `passed`, and why not (`reason`, for the record and the client)."""

    passed: bool
    reason: str = ""


class Window(str):
    """The text a check sees: `overlap` characters already checked, then the new ones. `start` and
    `end` are its positions in the whole answer; `final` says it is the last window."""

    start: int
    end: int
    final: bool

    def __new__(cls, text: str, *, start: int, final: bool) -> Window:
        window = super().__new__(cls, text)
        window.start, window.end, window.final = start, start + len(text), final
        return window


Verdict = bool | GuardResult
Check = Callable[[Window], Verdict | Awaitable[Verdict]]


def _named(check: Callable[..., Any], name: str | None) -> str:
    if name is not None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a guard's name must be a non-empty string, not {name!r}")
        return name
    return str(getattr(check, "__name__", type(check).__name__))


async def verdict(check: Callable[[Any], Any], text: Any, *, guard: str) -> GuardResult:
    """Run `check` on `text` (a sync check in a worker thread, off the event loop) as a GuardResult;
    what it returns that is neither a bool nor a GuardResult is a `ConfigurationError`.

    A sync check's thread cannot be stopped: cancelled, the wait for it ends at once and the
    thread is left to finish on its own (its verdict is dropped), so that a check stuck on I/O never
    holds up the end of a call."""
    if inspect.iscoroutinefunction(check) or inspect.iscoroutinefunction(type(check).__call__):
        result = await check(text)
    else:
        result = await anyio.to_thread.run_sync(check, text, abandon_on_cancel=True)
        if inspect.isawaitable(result):
            result = await result
    if isinstance(result, GuardResult):
        return result
    if isinstance(result, bool):
        return GuardResult(result, "" if result else "the check failed")
    raise ConfigurationError(f"guard {guard!r}: a check returns a bool or a GuardResult, not {result!r}")


class OutputGuard:
    """A check of a model's streamed text (see the module's docstring)::

    no_secrets = OutputGuard(blocklist(["BEGIN PRIVATE KEY"]), name="no-secrets")
    model = iModel(provider="openai", model="gpt-4o-mini", guards=[no_secrets])
    """

    def __init__(
        self,
        check: Check,
        *,
        name: str | None = None,
        window: int = 200,
        overlap: int = 50,
        mode: Literal["hold", "release_first"] = "hold",
        on_violation: Literal["stop", "raise"] = "stop",
    ) -> None:
        if not callable(check):
            raise ConfigurationError(f"a guard's check must be callable, not {check!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigurationError(f"window must be a positive number of characters, not {window!r}")
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < window:
            raise ConfigurationError(
                f"overlap must be a number of characters in [0, window), not {overlap!r}"
            )
        if mode not in ("hold", "release_first"):
            raise ConfigurationError(f"mode must be 'hold' or 'release_first', not {mode!r}")
        if on_violation not in ("stop", "raise"):
            raise ConfigurationError(f"on_violation must be 'stop' or 'raise', not {on_violation!r}")
        self.check = check
        self.name = _named(check, name)
        self.window = window
        self.overlap = overlap
        self.mode = mode
        self.on_violation = on_violation

    def __repr__(self) -> str:
        return f"OutputGuard({self.name!r}, window={self.window}, overlap={self.overlap}, mode={self.mode!r})"


class InputGuard:
    """A check of what a call sends, before it is sent: it sees the text of the request's messages
    (each ``role: content``, one per line); a violation raises `GuardViolation` and no request is
    made."""

    def __init__(
        self, check: Callable[[str], Verdict | Awaitable[Verdict]], *, name: str | None = None
    ) -> None:
        if not callable(check):
            raise ConfigurationError(f"a guard's check must be callable, not {check!r}")
        self.check = check
        self.name = _named(check, name)

    def __repr__(self) -> str:
        return f"InputGuard({self.name!r})"

    async def enforce(self, messages: Sequence[dict[str, Any]]) -> None:
        """Raise `GuardViolation` if `messages` do not pass."""
        text = "\n".join(f"{message.get('role')}: {_text_of(message.get('content'))}" for message in messages)
        result = await verdict(self.check, text, guard=self.name)
        if not result.passed:
            raise GuardViolation(
                f"input guard {self.name!r} refused the request: {result.reason}",
                guard=self.name,
                reason=result.reason,
            )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)
