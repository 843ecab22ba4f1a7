"""Provider ``"groq"``: Groq's chat completions, an OpenAI-compatible wire format.

The chunk mapping is shared with the OpenAI adapter (`openai_chat_mapping`); what differs is where
Groq reports usage (``x_groq.usage`` on the last chunk), its error events, and its SDK.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import groq
import httpx
from groq.resources.chat.completions import AsyncCompletions

from lionflow.errors import ProviderConnectionError, ProviderError, StreamInterrupted, TimeoutPhase
from lionflow.services.chunk import Chunk
from lionflow.services.providers._common import (
    SdkProvider,
    listed,
    malformed,
    sdk_parameters,
    sdk_timeout,
)
from lionflow.services.providers._structured import (
    RESPONSE_FORMAT_TYPES,
    output_format,
    schema_instruction,
    with_system_note,
)
from lionflow.services.providers.base import ChunkStream, ModelRequest
from lionflow.services.providers.openai_chat_mapping import (
    CHAT_ENDPOINTS,
    ChatChunkMapper,
    map_chunks,
    sdk_error,
)
from lionflow.services.providers.openai_chat_messages import chat_messages, chat_params

__all__ = ["GroqProvider"]

_SDK_PARAMS = sdk_parameters(AsyncCompletions.create)


class _GroqChunkMapper(ChatChunkMapper):
    def event_usage(self, event: Any) -> Any:
        # Groq reports streamed usage in x_groq on the last chunk (newer responses repeat it at the
        # top level, and a whole completion has only the top-level one).
        usage = getattr(event, "usage", None)
        if usage is None:
            usage = getattr(getattr(event, "x_groq", None), "usage", None)
        return usage

    def chunks(self, event: Any) -> list[Chunk]:
        chunks = super().chunks(event)
        error = getattr(getattr(event, "x_groq", None), "error", None)
        if error:
            # Groq's way of saying that it stopped the stream early; what came so far is kept by
            # the caller's partial Response.
            raise StreamInterrupted(f"groq stopped the stream: {error}", provider=self.provider)
        return chunks


def _json_mode(params: dict[str, Any]) -> str | None:
    """Turn a model class or JSON schema given as ``response_format`` into Groq's JSON mode, in
    `params`; the schema then travels in the returned system-prompt note.

    JSON mode works on every Groq model, while ``json_schema`` is refused by the models without
    Structured Outputs. JSON mode needs the word JSON in the prompt, and the note says what to fill in.
    A response format dict (``{"type": "json_schema", ...}``, ``{"type": "json_object"}``) is Groq's
    own form and is sent as given.
    """
    value = params.get("response_format")
    if value is None or (isinstance(value, Mapping) and value.get("type") in RESPONSE_FORMAT_TYPES):
        return None
    spec = output_format(value)
    assert spec is not None
    params["response_format"] = {"type": "json_object"}
    return schema_instruction(spec)


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
    _client: groq.AsyncGroq

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        endpoint: str | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(model=model, api_key=api_key, base_url=base_url, endpoint=endpoint)
        self._client = groq.AsyncGroq(
            api_key=self.client_key,
            base_url=base_url,
            default_headers=default_headers,
            max_retries=0,  # lionflow retries itself, only before the first chunk
        )

    def _arguments(self, request: ModelRequest) -> dict[str, Any]:
        params = dict(request.params)
        note = _json_mode(params)
        arguments = chat_params(params, max_tokens_field="max_completion_tokens", sdk_params=_SDK_PARAMS)
        arguments["model"] = request.model
        messages = chat_messages(request.messages, developer_role="system")
        arguments["messages"] = messages if note is None else with_system_note(messages, note)
        return arguments

    def _error(self, exc: BaseException, phase: TimeoutPhase = "connect") -> ProviderError:
        mapped = sdk_error(exc, provider=self.name, sdk=groq, phase=phase)
        if mapped is not None:
            return mapped
        # Unlike openai's, the groq SDK lets httpx errors escape while a stream is read.
        if isinstance(exc, httpx.TimeoutException):
            return sdk_timeout(exc, phase, provider=self.name)
        return ProviderConnectionError(f"the connection to groq was lost: {exc!r}", provider=self.name)

    async def open(self, request: ModelRequest) -> ChunkStream:
        arguments = self._arguments(request)
        completions = self._client.chat.completions
        mapper = _GroqChunkMapper(self.name)
        try:
            if not request.stream:
                completion = await completions.create(**arguments, stream=False)
                return ChunkStream(listed(mapper.completion_chunks(completion)))
            stream = await completions.create(**arguments, stream=True)
        except groq.APIError as exc:
            raise self._error(exc) from exc
        except json.JSONDecodeError as exc:  # the whole answer's body
            raise malformed(exc, self.name) from exc
        chunks = map_chunks(
            stream, mapper, errors=(groq.APIError, httpx.TransportError), map_error=self._error
        )
        return ChunkStream(chunks, close=stream.close)
