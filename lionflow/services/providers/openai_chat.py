"""Provider ``"openai"``: the OpenAI Chat Completions API, and any server that speaks it.

DeepSeek, OpenRouter, vLLM, Ollama and other OpenAI-compatible servers work through
``iModel(provider="openai", base_url=...)``; the fields they add (``reasoning_content``,
``reasoning``) are read too. ``endpoint="responses"`` selects the Responses API adapter instead.
"""

from __future__ import annotations

import json
from typing import Any

import openai
from openai.resources.chat.completions import AsyncCompletions

from lionflow.errors import ConfigurationError, ProviderError, TimeoutPhase
from lionflow.services.providers._common import listed, malformed, sdk_parameters
from lionflow.services.providers.base import ChunkStream, ModelRequest, Provider
from lionflow.services.providers.openai_chat_mapping import (
    CHAT_ENDPOINTS,
    ChatChunkMapper,
    map_chunks,
    sdk_error,
)
from lionflow.services.providers.openai_chat_messages import chat_messages, chat_params
from lionflow.services.providers.openai_client import OpenAIClientProvider

__all__ = ["OpenAIChatProvider"]

_SDK_PARAMS = sdk_parameters(AsyncCompletions.create)


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
            from lionflow.services.providers.openai_responses import OpenAIResponsesProvider

            return OpenAIResponsesProvider
        raise ConfigurationError(
            f"provider 'openai' has no endpoint {endpoint!r}; use 'chat' (Chat Completions, the default) "
            "or 'responses'"
        )

    def _arguments(self, request: ModelRequest) -> dict[str, Any]:
        server = self.server
        max_tokens_field = (
            "max_completion_tokens" if server is None or "api.openai.com" in server else "max_tokens"
        )
        arguments = chat_params(request.params, max_tokens_field=max_tokens_field, sdk_params=_SDK_PARAMS)
        arguments["model"] = request.model
        arguments["messages"] = chat_messages(request.messages)
        stream_options = arguments.pop("stream_options", None) or {}
        if request.stream:
            # Without include_usage OpenAI reports no usage at all for a streamed call.
            arguments["stream_options"] = {"include_usage": True, **stream_options}
        return arguments

    def _error(self, exc: BaseException, phase: TimeoutPhase = "connect") -> ProviderError:
        mapped = sdk_error(exc, provider=self.name, sdk=openai, phase=phase)
        assert mapped is not None, exc  # only called with openai.APIError
        return mapped

    async def open(self, request: ModelRequest) -> ChunkStream:
        arguments = self._arguments(request)
        completions = self._client.chat.completions
        mapper = ChatChunkMapper(self.name)
        try:
            if not request.stream:
                completion = await completions.create(**arguments, stream=False)
                return ChunkStream(listed(mapper.completion_chunks(completion)))
            stream = await completions.create(**arguments, stream=True)
        except openai.APIError as exc:
            raise self._error(exc) from exc
        except json.JSONDecodeError as exc:  # the whole answer's body
            raise malformed(exc, self.name) from exc
        chunks = map_chunks(stream, mapper, errors=(openai.APIError,), map_error=self._error)
        return ChunkStream(chunks, close=stream.close)
