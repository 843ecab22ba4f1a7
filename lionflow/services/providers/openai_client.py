"""The OpenAI SDK client that both OpenAI adapters (Chat Completions and Responses) are built on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import openai

from lionflow.services.providers._common import SdkProvider

__all__ = ["OpenAIClientProvider"]


class OpenAIClientProvider(SdkProvider):
    """Base of the ``provider="openai"`` adapters: one ``AsyncOpenAI`` client.

    The API key comes from ``api_key=`` or ``OPENAI_API_KEY``; it is optional when `base_url` (or
    ``OPENAI_BASE_URL``, read by the SDK) points at a compatible server. Client options:
    ``organization``, ``project``, ``default_headers``.
    """

    name: ClassVar[str] = "openai"
    option_names: ClassVar[frozenset[str]] = frozenset({"organization", "project", "default_headers"})
    api_key_variables: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    base_url_variable: ClassVar[str | None] = "OPENAI_BASE_URL"
    _client: openai.AsyncOpenAI

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        endpoint: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(model=model, api_key=api_key, base_url=base_url, endpoint=endpoint)
        self._client = openai.AsyncOpenAI(
            api_key=self.client_key,
            base_url=base_url,
            organization=organization,
            project=project,
            default_headers=default_headers,
            max_retries=0,  # lionflow retries itself, only before the first chunk
        )
