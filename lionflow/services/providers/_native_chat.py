"""Chat Completions over the native transport: ``provider="openai"`` (and, in `_native_groq`, ``"groq"``) with
``transport="native"`` (see `_native`).

The request is the SDK adapter's own (`request_arguments`), sent as the SDK would send it; events
are mapped by the same `ChatChunkMapper`, reading decoded JSON (`dict_field`) where the SDK adapter
reads the SDK's objects. Each SDK's stream rules are kept: an event whose data has an ``error`` ends
the stream with that error (openai: any event; groq: an unnamed one or ``event: error``; groq
reads other named events as ``{"data": ..., "event": ...}``, a chunk without choices), ``[DONE]``
ends it, and an event the stream never terminated with a blank line is dropped.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import anyio

from lionflow.errors import ProviderError, TimeoutPhase
from lionflow.services.chunk import Chunk
from lionflow.services.providers._chat_completions import ChatChunkMapper, dict_field, event_error
from lionflow.services.providers._errors import interrupted
from lionflow.services.providers._native import (
    MALFORMED,
    TRANSPORT_ERRORS,
    EventReader,
    NativeClient,
    decode,
    error_message,
    read_error,
    status_failure,
    transport_failure,
    wire_body,
)
from lionflow.services.providers.base import ChunkStream, ModelRequest, SdkProvider, listed
from lionflow.services.providers.openai_chat import OpenAIChatProvider
from lionflow.services.providers.openai_chat_request import request_arguments as openai_arguments

_DONE = b"[DONE]"
_DRAIN_SECONDS = 0.1  # the openai SDK's own bound


def openai_headers(options: Mapping[str, Any], key: str) -> dict[str, str]:
    """The key, organization and project as the openai SDK sends them (the last two, when not given,
    from ``OPENAI_ORG_ID`` and ``OPENAI_PROJECT_ID``, as the SDK reads them), then ``default_headers``."""
    headers = {"authorization": f"Bearer {key}"}
    for option, variable, header in (
        ("organization", "OPENAI_ORG_ID", "openai-organization"),
        ("project", "OPENAI_PROJECT_ID", "openai-project"),
    ):
        value = options.get(option)
        if value is None:
            value = os.environ.get(variable)
        if value is not None:
            headers[header] = value
    return headers | dict(options.get("default_headers") or {})


class NativeChat(SdkProvider):
    """What the native Chat Completions adapters share; a base before their SDK adapter's class."""

    name: ClassVar[str]
    transport: ClassVar[str] = "native"
    sdk_errors: ClassVar[tuple[type[BaseException], ...]] = TRANSPORT_ERRORS
    malformed_errors: ClassVar[tuple[type[BaseException], ...]] = MALFORMED
    path: ClassVar[str]
    default_server: ClassVar[str]
    named_events: ClassVar[bool]  # whether named events (other than `error`) are chunks too
    quotes_error_body: ClassVar[bool]  # see `error_message`
    _native: NativeClient

    def _make_client(self) -> Any:
        self._native = NativeClient(self.server or self.default_server, self._headers())
        return self._native

    def _headers(self) -> dict[str, str]:
        """The headers every request carries: the key as the SDK sends it, then ``default_headers``."""
        return {"authorization": f"Bearer {self.client_key}"} | dict(
            self.settings.options.get("default_headers") or {}
        )

    def _error(self, error: BaseException, phase: TimeoutPhase) -> ProviderError:
        return transport_failure(error, phase, provider=self.name)

    def _mapper(self) -> ChatChunkMapper:
        return ChatChunkMapper(self.name, dict_field)

    async def _open(self, arguments: dict[str, Any], request: ModelRequest) -> ChunkStream:
        body = wire_body(arguments)
        body["stream"] = request.stream
        mapper = self._mapper()
        with self._map_errors("connect"):
            response = await self._native.send(
                self.path, body, headers=arguments.get("extra_headers"), timeouts=arguments.get("timeout")
            )
            if response.status_code >= 400:
                error_body, text = await read_error(response)
                message = error_message(
                    error_body, text, response.status_code, quotes_body=self.quotes_error_body
                )
                raise status_failure(response, message, self.name)
            if not request.stream:
                try:
                    completion = decode(await response.aread())
                finally:
                    await response.aclose()
                return ChunkStream(listed(mapper.completion_chunks(completion)))
        reader = EventReader(response)
        return ChunkStream(self._chunks(reader, mapper), close=reader.aclose)

    async def _chunks(self, reader: EventReader, mapper: ChatChunkMapper) -> AsyncIterator[Chunk]:
        phase: TimeoutPhase = "first_chunk"
        map_errors = self._map_errors
        named_events = self.named_events
        done = False
        while not done:
            with map_errors(phase):
                events = await reader.batch()
            if events is None:
                break
            for sse in events:
                data = sse.data
                if data.startswith(_DONE):
                    done = True
                    break
                with map_errors(phase):
                    event = decode(data)
                name = sse.event
                if name is not None and name != "error" and not named_events:
                    event = {"data": event, "event": name}  # what groq's SDK makes of it: no choices
                elif event.__class__ is dict and event.get("error"):
                    raise interrupted(event_error(event["error"], self.name))
                chunks = mapper.chunks(event)
                if chunks:
                    phase = "idle"
                    for chunk in chunks:
                        yield chunk
        if done:
            # As the openai SDK does: the rest of the body is read (and ignored; a failure there is
            # no failure of the answer), for a while, so that the connection can serve the next call.
            with anyio.move_on_after(_DRAIN_SECONDS), contextlib.suppress(*TRANSPORT_ERRORS):
                while await reader.batch() is not None:
                    pass
        await reader.aclose()
        for chunk in mapper.stream_end():
            yield chunk


class NativeOpenAIChatProvider(NativeChat, OpenAIChatProvider):
    """`OpenAIChatProvider` over the native transport (``transport="native"``): same requests, same
    chunks, same errors; ``raw_response`` holds each decoded event (a dict)."""

    path: ClassVar[str] = "/chat/completions"
    default_server: ClassVar[str] = "https://api.openai.com/v1"
    named_events: ClassVar[bool] = True
    quotes_error_body: ClassVar[bool] = False

    def _headers(self) -> dict[str, str]:
        return openai_headers(self.settings.options, self.client_key)

    async def open(self, request: ModelRequest) -> ChunkStream:
        return await self._open(openai_arguments(request, server=self.server), request)
