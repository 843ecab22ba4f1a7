"""Provider ``"groq"``: Groq's chat completions, an OpenAI-compatible wire format.

The chunk mapping is shared with the OpenAI adapter (`_chat_completions`); what differs is where
Groq reports usage (``x_groq.usage`` on the last chunk), its error events, and its SDK.
"""

from __future__ import annotations

from typing import Any, ClassVar

import groq
import httpx

from lionflow.errors import ProviderError, StreamInterrupted, TimeoutPhase
from lionflow.services.chunk import Chunk
from lionflow.services.providers._chat_completions import (
    CHAT_ENDPOINTS,
    ChatChunkMapper,
    open_chat,
    sdk_error,
)
from lionflow.services.providers._errors import transport_error
from lionflow.services.providers.base import ChunkStream, ModelRequest, SdkProvider
from lionflow.services.providers.groq_chat_request import request_arguments


class GroqChunkMapper(ChatChunkMapper):
    """Chat Completions chunks as Groq sends them (see `ChatChunkMapper`)."""

    def event_usage(self, event: Any) -> Any:
        # Groq reports streamed usage in x_groq on the last chunk (newer responses repeat it at the
        # top level, and a whole completion has only the top-level one).
        field = self.field
        usage = field(event, "usage")
        if usage is None:
            usage = field(field(event, "x_groq"), "usage")
        return usage

    def chunks(self, event: Any) -> list[Chunk]:
        chunks = super().chunks(event)
        error = self.field(self.field(event, "x_groq"), "error")
        if error:
            # Groq's way of saying that it stopped the stream early; what came so far is kept by
            # the caller's partial Response.
            raise StreamInterrupted(f"groq stopped the stream: {error}", provider=self.provider)
        return chunks


class GroqProvider(SdkProvider):
    """Adapter over ``AsyncGroq().chat.completions.create(stream=True)`` (or the non-streaming call
    with ``stream=False``).

    The API key comes from ``api_key=`` or ``GROQ_API_KEY`` (optional when `base_url` or
    ``GROQ_BASE_URL`` points elsewhere). Client option: ``default_headers``. ``endpoint`` may be
    None or ``"chat"`` (``"chat/completions"``); any other raises `ConfigurationError` rather than
    silently calling chat completions. ``max_tokens`` is sent as ``max_completion_tokens`` (Groq's
    current name); there is no default limit. ``developer`` messages are sent as ``system`` (Groq
    has no developer role). Reasoning models' ``reasoning`` deltas become reasoning chunks; tool
    calls arrive whole, one chunk each. An ``event: error`` in the stream raises
    `StreamInterrupted`, retryable only when the error is transient (never for ``tool_use_failed``,
    where the model's own tool call was invalid).

    Structured output: a pydantic model class or a JSON schema as ``response_format`` is sent as
    JSON mode (``{"type": "json_object"}``, which every Groq model has) plus a note with the schema
    at the end of the system prompt (a system message first when there is none). For Groq's
    ``json_schema`` mode on the models that have it, give ``response_format={"type": "json_schema",
    "json_schema": {...}}``, sent as given.
    """

    name: ClassVar[str] = "groq"
    option_names: ClassVar[frozenset[str]] = frozenset({"default_headers"})
    api_key_variables: ClassVar[tuple[str, ...]] = ("GROQ_API_KEY",)
    base_url_variable: ClassVar[str | None] = "GROQ_BASE_URL"
    endpoints: ClassVar[tuple[str, ...]] = CHAT_ENDPOINTS
    native: ClassVar[str | None] = "lionflow.services.providers._native_groq:NativeGroqProvider"
    # Unlike openai's, the groq SDK lets httpx errors escape while a stream is read.
    sdk_errors: ClassVar[tuple[type[BaseException], ...]] = (groq.APIError, httpx.TransportError)
    _client: groq.AsyncGroq

    def _make_client(self) -> groq.AsyncGroq:
        return groq.AsyncGroq(**self._client_arguments(groq.Timeout))

    def _error(self, error: BaseException, phase: TimeoutPhase) -> ProviderError:
        mapped = sdk_error(error, provider=self.name, sdk=groq, phase=phase)
        return mapped if mapped is not None else transport_error(error, phase, provider=self.name)

    async def open(self, request: ModelRequest) -> ChunkStream:
        mapper = GroqChunkMapper(self.name)
        return await open_chat(
            self._client.chat.completions, request_arguments(request), mapper, request, self._map_errors
        )
