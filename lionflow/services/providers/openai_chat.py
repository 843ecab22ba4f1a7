"""Provider ``"openai"``: the OpenAI Chat Completions API, and any server that speaks it.

DeepSeek, OpenRouter, vLLM, Ollama and other OpenAI-compatible servers work through
``iModel(provider="openai", base_url=...)``; the fields they add (``reasoning_content``,
``reasoning``) are read too. ``endpoint="responses"`` selects the Responses API adapter instead.
"""

from __future__ import annotations

from typing import ClassVar

import httpx2
import openai

from lionflow.errors import ConfigurationError, ProviderError, TimeoutPhase
from lionflow.services.providers._chat_completions import (
    CHAT_ENDPOINTS,
    ChatChunkMapper,
    open_chat,
    sdk_error,
)
from lionflow.services.providers._errors import transport_error
from lionflow.services.providers.base import ChunkStream, ModelRequest, Provider, SdkProvider
from lionflow.services.providers.openai_chat_request import request_arguments


class OpenAIClientProvider(SdkProvider):
    """Base of the ``provider="openai"`` adapters (Chat Completions, Responses): one ``AsyncOpenAI``
    client, and the openai SDK's errors mapped.

    The API key comes from ``api_key=`` or ``OPENAI_API_KEY``; it is optional when `base_url` (or
    ``OPENAI_BASE_URL``, read by the SDK) points at a compatible server. Client options:
    ``organization``, ``project``, ``default_headers``.
    """

    name: ClassVar[str] = "openai"
    option_names: ClassVar[frozenset[str]] = frozenset({"organization", "project", "default_headers"})
    api_key_variables: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    base_url_variable: ClassVar[str | None] = "OPENAI_BASE_URL"
    # The SDK reads an error status's body outside its own wrapping: its HTTP client's errors escape.
    sdk_errors: ClassVar[tuple[type[BaseException], ...]] = (openai.APIError, httpx2.TransportError)
    _client: openai.AsyncOpenAI

    def _make_client(self) -> openai.AsyncOpenAI:
        options = self.settings.options
        return openai.AsyncOpenAI(
            **self._client_arguments(openai.Timeout),
            organization=options.get("organization"),
            project=options.get("project"),
        )

    def _error(self, error: BaseException, phase: TimeoutPhase) -> ProviderError:
        mapped = sdk_error(error, provider=self.name, sdk=openai, phase=phase)
        return mapped if mapped is not None else transport_error(error, phase, provider=self.name)


class OpenAIChatProvider(OpenAIClientProvider):
    """Adapter over ``AsyncOpenAI().chat.completions.create(stream=True,
    stream_options={"include_usage": True})`` (or the non-streaming call with ``stream=False``).

    The API key comes from ``api_key=`` or ``OPENAI_API_KEY``; it is optional when `base_url` (or
    ``OPENAI_BASE_URL``, read by the SDK) points at a compatible server. Client options:
    ``organization``, ``project``, ``default_headers``.

    ``max_tokens`` is sent as ``max_completion_tokens`` to OpenAI itself (its reasoning models
    reject ``max_tokens``) and as ``max_tokens`` to other servers, which may know only that name.
    There is no default token limit. Parameters the SDK method does not know go in the request body
    unchanged (``extra_body``), for compatible servers' own options. A refusal (``delta.refusal``)
    ends with ``finish_reason="refusal"``; the native value stays in ``metadata["finish_reason"]``.

    Structured output: a pydantic model class or a JSON schema as ``response_format`` is sent as
    ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``, with ``strict`` true
    only when the schema meets strict mode's rules (every object ``additionalProperties: false``
    with all its properties required: a model with ``extra="forbid"`` and no defaults), since
    OpenAI refuses a strict schema that breaks them. A response format dict is sent as given.
    """

    @classmethod
    def for_endpoint(cls, endpoint: str | None) -> type[Provider]:
        """Chat Completions (the default: ``None``, ``"chat"``, ``"chat/completions"``) or
        ``"responses"`` (the Responses API adapter)."""
        name = None if endpoint is None else endpoint.strip("/").lower()
        if name is None or name in CHAT_ENDPOINTS:
            return OpenAIChatProvider
        if name == "responses":
            # Imported here: the Responses adapter builds on OpenAIClientProvider, defined above.
            from lionflow.services.providers.openai_responses import OpenAIResponsesProvider

            return OpenAIResponsesProvider
        raise ConfigurationError(
            f"provider 'openai' has no endpoint {endpoint!r}; use 'chat' (Chat Completions, the default) "
            "or 'responses'"
        )

    native: ClassVar[str | None] = "lionflow.services.providers._native_chat:NativeOpenAIChatProvider"

    async def open(self, request: ModelRequest) -> ChunkStream:
        arguments = request_arguments(request, server=self.server)
        mapper = ChatChunkMapper(self.name)
        return await open_chat(self._client.chat.completions, arguments, mapper, request, self._map_errors)
