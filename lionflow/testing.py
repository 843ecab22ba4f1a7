"""`ScriptedModel`: a deterministic, offline model for testing your own flows.

It runs the same service layer as a real provider (retries, timeouts, limits, Response assembly,
cleanup), so a test of your code with a ScriptedModel exercises what production runs, minus the
network. Use it as ``ScriptedModel(...)`` or as ``iModel(provider="scripted", ...)``; both take the
same options::

    from lionflow.testing import ScriptedModel

    model = ScriptedModel(responses=["Hello!", "Goodbye."], chunk_size=2, delay=0.01)
    assert (await model.invoke("hi")).text == "Hello!"
    assert model.requests[0].messages == [{"role": "user", "content": "hi"}]

Options:

- ``responses``: texts (or `ScriptedReply` objects) used in turn, one per call; or a function of the
  chat messages returning one. Without it, the model replies with a sentence quoting the last
  user message. Running out of responses raises `ScriptedModelExhausted`.
- ``chunk_size``: characters per text, reasoning and tool-argument chunk (default 4).
- ``delay``: seconds before each chunk, or a function of the chunk's position (0-based) returning
  seconds, to simulate a slow model or a stall. ``connect_delay``: seconds before the stream opens.
- ``reasoning``: reasoning text streamed before the reply; ``tool_calls``: a list of
  ``{"name": ..., "arguments": {...}, "id": ...}`` streamed after it; ``usage`` (default True):
  end with a usage chunk that counts words as tokens.
- ``fail_after=N``: raise `StreamInterrupted` (retryable, carrying the partial Response) after N
  chunks, on every call.
- ``fail_on_open``: exceptions raised in turn by the first requests before any chunk, such as
  ``[RateLimitError("slow down")]``, to test retries.

Messages are read as every real adapter reads them (`parse_messages`): a malformed one raises
`ConfigurationError` before the request, and one that carries nothing (the empty answer of a turn
stopped before its first chunk) is left out of what the model sees.

Inspect what the model saw with `requests` (every `ModelRequest`, retries included), and stream
cleanup with `open_streams` (streams open now) and `max_open_streams` (the most at once).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from lionflow.errors import ScriptedModelExhausted
from lionflow.services.imodel import iModel
from lionflow.services.providers.base import ModelRequest
from lionflow.services.providers.scripted import Delay, Responses, ScriptedProvider, ScriptedReply

__all__ = ["ScriptedModel", "ScriptedModelExhausted", "ScriptedProvider", "ScriptedReply"]


class ScriptedModel(iModel):
    """An `iModel` on provider ``"scripted"``: deterministic replies for tests, offline.

    ``ScriptedModel(responses=[...], ...)`` is ``iModel(provider="scripted", responses=[...], ...)``
    with the adapter's bookkeeping (`requests`, `open_streams`, `max_open_streams`) at hand. All
    iModel options (name, timeout, max_retries, max_concurrent, ...) apply.
    """

    adapter: ScriptedProvider

    def __init__(
        self,
        responses: Responses = None,
        *,
        model: str = "scripted",
        chunk_size: int = 4,
        delay: Delay = 0.0,
        connect_delay: float = 0.0,
        reasoning: str | None = None,
        tool_calls: Sequence[dict[str, Any]] | None = None,
        usage: bool = True,
        fail_after: int | None = None,
        fail_on_open: Iterable[BaseException] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            "scripted",
            model,
            responses=responses,
            chunk_size=chunk_size,
            delay=delay,
            connect_delay=connect_delay,
            reasoning=reasoning,
            tool_calls=tool_calls,
            usage=usage,
            fail_after=fail_after,
            fail_on_open=fail_on_open,
            **kwargs,
        )

    @property
    def requests(self) -> list[ModelRequest]:
        """Every request the model received, in order (retries included)."""
        return self.adapter.requests

    @property
    def open_streams(self) -> int:
        """Streams opened and not yet closed: 0 once every call has ended and cleaned up."""
        return self.adapter.open_streams

    @property
    def max_open_streams(self) -> int:
        """The most streams that were open at the same time."""
        return self.adapter.max_open_streams
