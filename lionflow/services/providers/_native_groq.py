"""Groq's chat completions over the native transport (``provider="groq", transport="native"``): the
Chat Completions native adapter (`_native_chat.NativeChat`) with Groq's server, stream rules and
chunk mapper. A module of its own, so that the OpenAI one needs no groq package."""

from __future__ import annotations

from typing import ClassVar

from lionflow.services.providers._chat_completions import ChatChunkMapper, dict_field
from lionflow.services.providers._native_chat import NativeChat
from lionflow.services.providers.base import ChunkStream, ModelRequest
from lionflow.services.providers.groq_chat import GroqChunkMapper, GroqProvider
from lionflow.services.providers.groq_chat_request import request_arguments as groq_arguments


class NativeGroqProvider(NativeChat, GroqProvider):
    """`GroqProvider` over the native transport (``transport="native"``): same requests, same chunks,
    same errors; ``raw_response`` holds each decoded event (a dict)."""

    path: ClassVar[str] = "/openai/v1/chat/completions"
    default_server: ClassVar[str] = "https://api.groq.com"
    named_events: ClassVar[bool] = False
    quotes_error_body: ClassVar[bool] = True

    def _mapper(self) -> ChatChunkMapper:
        return GroqChunkMapper(self.name, dict_field)

    async def open(self, request: ModelRequest) -> ChunkStream:
        return await self._open(groq_arguments(request), request)
