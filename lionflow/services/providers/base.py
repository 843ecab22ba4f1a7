"""What a provider adapter is: one provider call mapped to an async stream of Chunks.

Everything the providers share (retries, timeouts, limits, assembling the Response, closing the
stream) lives once in `lionflow.services.call`; an adapter does only the mapping.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lionflow.services.chunk import Chunk

__all__ = ["ChunkStream", "ModelRequest", "Provider"]


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One request as an adapter receives it.

    `params` holds the generation parameters (temperature, max_tokens, top_p, stop, seed, tools,
    tool_choice, ...) merged from the iModel's defaults and the call's arguments; `stream` chooses
    the provider-side mode only (the caller may iterate either way).
    """

    model: str
    messages: list[dict[str, Any]]
    params: Mapping[str, Any] = field(default_factory=dict)
    stream: bool = True


class ChunkStream:
    """An open provider stream: async-iterates Chunks, and `aclose()` releases the connection.

    `chunks` is usually an async generator mapping SDK events; `close` releases what was opened
    before the generator started (the SDK stream, an HTTP response). Closing is idempotent and
    safe whether or not iteration began.
    """

    __slots__ = ("_chunks", "_close", "_closed")

    def __init__(
        self, chunks: AsyncIterator[Chunk], *, close: Callable[[], Awaitable[Any] | None] | None = None
    ) -> None:
        self._chunks = chunks
        self._close = close
        self._closed = False

    def __aiter__(self) -> ChunkStream:
        return self

    def __anext__(self) -> Awaitable[Chunk]:
        # The inner awaitable itself, not a coroutine around it: this runs once per chunk.
        return self._chunks.__anext__()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if self._close is not None:
                result = self._close()
                if inspect.isawaitable(result):
                    await result


class Provider(ABC):
    """Base class of provider adapters.

    Subclasses set `name`, list their own constructor options in `option_names` (everything else an
    iModel receives becomes a default request parameter), and implement `open()`, which sends the
    request and returns once the provider has answered (connected), as a `ChunkStream`.

    Contract for the stream: text, reasoning and refusal deltas as they arrive; every tool-call
    fragment carries `tool_call_id` and `tool_name`; exactly one `finish` chunk with a normalized
    `finish_reason` (native value in `metadata`); one `usage` chunk with complete totals where the
    provider reports usage. Errors are raised as `lionflow.errors` types with the SDK
    error as ``__cause__``.
    """

    name: ClassVar[str]
    option_names: ClassVar[frozenset[str]] = frozenset()
    default_model: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.model = model
        self.api_key = api_key
        self.base_url = base_url
        self.endpoint = endpoint

    @classmethod
    def for_endpoint(cls, endpoint: str | None) -> type[Provider]:
        """The adapter class serving `endpoint` (``iModel(endpoint=...)``); this one by default.

        A provider with several APIs (OpenAI: Chat Completions and Responses) returns the class of
        the one asked for, and raises `ConfigurationError` for an endpoint it does not have.
        """
        return cls

    @abstractmethod
    async def open(self, request: ModelRequest) -> ChunkStream:
        """Send `request` and return the open stream of its chunks."""

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Release client resources (connection pools). Called by `iModel.aclose()`."""
