"""The OpenAI Responses API over the native transport: ``provider="openai", endpoint="responses"``
with ``transport="native"`` (see `_native`).

The request is the SDK adapter's own (`request_arguments`), sent as the openai SDK sends it; events
are mapped by the same `ResponsesMapper`, reading decoded JSON (`dict_field`) where the SDK adapter
reads the SDK's objects. The SDK's stream rules are kept: any event whose data has a truthy
``error`` ends the stream with it (but those named ``thread.*``, which the SDK passes on whole and
the mapping ignores), ``[DONE]`` ends the stream, an event the stream never terminated with a
blank line is dropped, and after the terminal event the body is read to its end and nothing in it
counts. Errors are worded as the SDK adapter words the SDK's exceptions.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import httpx

from lionflow.errors import ProviderConnectionError, ProviderError, StreamInterrupted, TimeoutPhase
from lionflow.services.chunk import Chunk
from lionflow.services.providers._chat_completions import dict_field
from lionflow.services.providers._errors import interrupted, sdk_timeout, transport_error
from lionflow.services.providers._native import (
    MALFORMED,
    EventReader,
    NativeClient,
    decode,
    read_error,
    status_failure,
    wire_body,
)
from lionflow.services.providers._native_chat import openai_headers
from lionflow.services.providers.base import ChunkStream, ModelRequest, listed
from lionflow.services.providers.openai_responses import (
    OpenAIResponsesProvider,
    ResponsesMapper,
    response_failure,
    stream_failure,
)
from lionflow.services.providers.openai_responses_request import request_arguments

_DONE = b"[DONE]"
_TEXT_DELTA = "response.output_text.delta"

# What the SDK wraps as APIConnectionError (its HTTP client's request errors), and so maps alike.
_REQUEST_ERRORS = (httpx.RequestError,)


def _status_message(body: Any, status: int) -> str:
    """An error status's message as the SDK adapter reads it from the SDK's `APIStatusError`: the
    body's ``message`` (under ``error`` when there is one) when it is a string, else the SDK's own
    ``Error code: STATUS``."""
    error = body.get("error", body) if isinstance(body, Mapping) else body
    message = error.get("message") if isinstance(error, Mapping) else None
    return message if isinstance(message, str) else f"Error code: {status}"


class NativeOpenAIResponsesProvider(OpenAIResponsesProvider):
    """`OpenAIResponsesProvider` over the native transport (``transport="native"``): same requests,
    same chunks, same errors; ``raw_response`` holds each decoded event (a dict), or the decoded
    response of a call with ``stream=False``."""

    transport: ClassVar[str] = "native"
    sdk_errors: ClassVar[tuple[type[BaseException], ...]] = _REQUEST_ERRORS
    malformed_errors: ClassVar[tuple[type[BaseException], ...]] = MALFORMED
    path: ClassVar[str] = "/responses"
    default_server: ClassVar[str] = "https://api.openai.com/v1"
    _native: NativeClient

    def _make_client(self) -> Any:
        self._native = NativeClient(self.server or self.default_server, self._headers())
        return self._native

    def _headers(self) -> dict[str, str]:
        return openai_headers(self.settings.options, self.client_key)

    def _error(self, error: BaseException, phase: TimeoutPhase) -> ProviderError:
        """As the SDK adapter maps the SDK's wrapping of an httpx error: its timeout as a
        `ProviderTimeout` of `phase`, anything else a failed connection."""
        if isinstance(error, httpx.TimeoutException):
            return sdk_timeout(error, phase, provider=self.name)
        return ProviderConnectionError("connection failed: Connection error.", provider=self.name)

    async def open(self, request: ModelRequest) -> ChunkStream:
        arguments = request_arguments(request)
        body = wire_body(arguments)
        body["stream"] = request.stream
        mapper = ResponsesMapper(self.name, request.model, dict_field)
        with self._map_errors("connect"):
            response = await self._native.send(
                self.path,
                body,
                headers=arguments.get("extra_headers"),
                timeouts=arguments.get("timeout"),
                params=arguments.get("extra_query"),
            )
        if response.status_code >= 400:
            try:
                error_body, _ = await read_error(response)
            except _REQUEST_ERRORS as error:
                # The SDK reads an error's body outside its own wrapping: its HTTP client's error escapes.
                raise transport_error(error, "connect", provider=self.name) from error
            raise status_failure(response, _status_message(error_body, response.status_code), self.name)
        if not request.stream:
            with self._map_errors("connect"):
                try:
                    result = decode(await response.aread())
                finally:
                    await response.aclose()
            if dict_field(result, "status") == "failed":
                raise response_failure(result, self.name, dict_field)
            return ChunkStream(listed(mapper.whole(result)))
        reader = EventReader(response)
        return ChunkStream(self._stream(reader, mapper, response.request), close=reader.aclose)

    async def _stream(
        self, reader: EventReader, mapper: ResponsesMapper, request: httpx.Request
    ) -> AsyncIterator[Chunk]:
        phase: TimeoutPhase = "first_chunk"  # until a chunk went out; then "idle"
        map_errors = self._map_errors
        handle = mapper.handle
        done = False  # [DONE], or the terminal event
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
                if name is not None and name.startswith("thread."):
                    continue  # the SDK passes these on as {"data", "event"}, which map to nothing
                if event.__class__ is dict:
                    if event.get("error"):
                        raise interrupted(stream_failure(event["error"], self.name))
                    if event.get("type") == _TEXT_DELTA:
                        # nearly every event: a text delta, mapped here without a generator per event
                        delta = event.get("delta")
                        if delta:
                            phase = "idle"
                            yield mapper.chunk("text", delta, event.get("output_index"), event)
                        continue
                for chunk in handle(event):
                    phase = "idle"
                    yield chunk
                if mapper.finished:
                    done = True
                    break
        if mapper.finished:
            # As the SDK adapter: the rest of the body is read only so that the connection can go
            # back to the pool; nothing in it belongs to the answer, and a failure there loses nothing.
            with contextlib.suppress(*_REQUEST_ERRORS):
                while await reader.batch() is not None:
                    pass
        await reader.aclose()
        if not mapper.finished:
            # Every Responses stream ends with a terminal event; without one the answer was cut off.
            raise StreamInterrupted(
                "the stream ended before the response completed", provider=self.name, retryable=True
            )
