"""``POST /v1/chat/completions``: the OpenAI Chat Completions API over any lionflow model.

The request's messages and parameters go to `iModel.invoke()` as they are (lionflow's message form
is OpenAI's); the chunks come back as ``chat.completion.chunk`` events. Only the server's own
choices are made here: ``max_completion_tokens`` and ``max_tokens`` are one limit, ``n`` above 1 is
refused (a model call has one answer), and reasoning streams as ``reasoning_content`` (the field
DeepSeek and others use), which the official client keeps as an extra field.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lionflow.serve._context import ServeContext, client_params, error_response
from lionflow.serve._errors import APIError, from_validation, refuse_non_json_numbers
from lionflow.serve._hub import Ended, EventSink, called, relay
from lionflow.serve._record import ended_by, once
from lionflow.services.chunk import Chunk, Usage
from lionflow.services.imodel import iModel
from lionflow.services.response import Response

# lionflow's finish reasons as Chat Completions has them (it has no "refusal": a refusal stops).
_FINISH = {"refusal": "stop", "error": "stop", "cancelled": "stop"}
_DONE = b"data: [DONE]\n\n"


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The request body; fields the server does not name pass to the model as parameters."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    n: int | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None

    def params(self) -> dict[str, Any]:
        """The model call's parameters."""
        named = {
            "max_tokens": self.max_completion_tokens or self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
            "seed": self.seed,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "response_format": _response_format(self.response_format),
        }
        extra = client_params(self.model_extra or {})
        return {key: value for key, value in named.items() if value is not None} | extra


_FORMATS = ("text", "json_object", "json_schema")


def _response_format(value: dict[str, Any] | None) -> Any:
    # {"type": "text"} asks for nothing; json_schema and json_object pass on as the dict they are.
    if value is None or value.get("type") == "text":
        return None
    if value.get("type") not in _FORMATS:
        raise APIError(
            400, f"response_format.type must be one of {', '.join(_FORMATS)}", param="response_format.type"
        )
    return value


def parse(body: bytes) -> ChatRequest:
    """The request, or an `APIError` (400) naming what is wrong."""
    try:
        request = ChatRequest.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation(exc) from None
    refuse_non_json_numbers(body)
    if request.n is not None and request.n != 1:
        raise APIError(400, "n must be 1: this server returns one choice per request", param="n")
    request.params()  # refuses what the fields hold before anything is sent
    return request


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


class ChunkEncoder:
    """Turns one call's chunks into ``chat.completion.chunk`` events (SSE ``data:`` lines)."""

    def __init__(self, model: str, *, include_usage: bool, completion_id: str | None = None) -> None:
        self.id = completion_id or new_id()
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self._usage: Usage | None = None
        self._tools: dict[str, int] = {}  # tool_call_id -> its position among the answer's calls
        self._role_sent = False

    def _event(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        if not self._role_sent:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return self._data({"choices": [choice]})

    def _data(self, fields: dict[str, Any]) -> bytes:
        payload = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            **fields,
        }
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    def encode(self, chunk: Chunk) -> bytes:
        """The events for `chunk` (none for a usage chunk: usage closes the stream, if asked for)."""
        kind = chunk.type
        if kind == "text":
            return self._event({"content": chunk.data})
        if kind == "reasoning":
            return self._event({"reasoning_content": chunk.data})
        if kind == "refusal":
            return self._event({"refusal": chunk.data})
        if kind == "tool_call":
            # The first fragment of a call carries its id and name; later ones only arguments.
            call_id = chunk.tool_call_id or ""
            position = self._tools.get(call_id)
            if position is None:
                position = self._tools[call_id] = len(self._tools)
                function = {"name": chunk.tool_name, "arguments": chunk.data}
                call: dict[str, Any] = {
                    "index": position,
                    "id": call_id,
                    "type": "function",
                    "function": function,
                }
            else:
                call = {"index": position, "function": {"arguments": chunk.data}}
            return self._event({"tool_calls": [call]})
        if kind == "usage":
            self._usage = chunk.usage
            return b""
        reason = chunk.finish_reason or "stop"
        return self._event({}, _FINISH.get(reason, reason))

    def end(self) -> bytes:
        """The usage event (when asked for: zeros if the model reported none), then the end marker."""
        if self.include_usage:
            return self._data({"choices": [], "usage": _usage(self._usage or Usage())}) + _DONE
        return _DONE

    def error(self, error: APIError) -> bytes:
        """An error after the stream began: an ``error`` event, then the end marker."""
        return b"data: " + error.body_bytes() + b"\n\n" + _DONE


def new_id() -> str:
    """A completion's id (also its stream's, for resuming)."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion(response: Response, model: str, completion_id: str) -> dict[str, Any]:
    """The ``chat.completion`` object of a whole answer."""
    message: dict[str, Any] = {"role": "assistant", "content": response.text or None}
    if response.refusal:
        message["refusal"] = response.refusal
    if response.reasoning:
        message["reasoning_content"] = response.reasoning
    if response.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": call.raw_arguments or json.dumps(call.arguments),
                },
            }
            for call in response.tool_calls
        ]
    reason = response.finish_reason or "stop"
    result: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": _FINISH.get(reason, reason), "logprobs": None}
        ],
    }
    if response.usage is not None:
        result["usage"] = _usage(response.usage)
    return result


async def stream(
    model: iModel, request: ChatRequest, out: EventSink, *, completion_id: str, ended: Ended | None = None
) -> None:
    """Produce the event stream of `request` on `model` (see `lionflow.serve._hub.relay`)."""
    include_usage = request.stream_options is not None and request.stream_options.include_usage
    encoder = ChunkEncoder(request.model, include_usage=include_usage, completion_id=completion_id)
    await relay(lambda: model.stream(request.messages, **request.params()), encoder, out, ended=ended)


def register(app: FastAPI, context: ServeContext) -> None:
    """``POST /v1/chat/completions`` and ``GET /v1/chat/completions/{id}`` on `app`."""

    @app.get("/v1/chat/completions/{completion_id}", response_model=None)
    async def resume(completion_id: str, request: Request) -> Any:
        # A stream that lost its client: what came after Last-Event-ID, then what comes live.
        # Without Accept: text/event-stream, the stored completion.
        try:
            if "text/event-stream" not in request.headers.get("accept", ""):
                return await context.recorder.load(completion_id, "chat.completion")
            return await context.resume(completion_id, request.headers.get("last-event-id"))
        except APIError as exc:
            return error_response(exc)

    @app.post("/v1/chat/completions/{completion_id}/cancel", response_model=None)
    async def cancel(completion_id: str) -> Any:
        # lionflow's own (the Chat Completions API has none): stop a streamed answer now, even
        # while the server would let it run on awaiting a reconnect (resume_grace). The turn is
        # stored as incomplete; the followers get its end.
        stopped = await context.hub.stop(completion_id)
        if stopped is None:
            return error_response(
                APIError(404, f"no streamed completion {completion_id!r} here", code="not_found")
            )
        return {"id": completion_id, "object": "chat.completion.cancel", "cancelled": stopped}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Any:
        try:
            parsed = parse(await context.read_body(request))
            model = context.model(parsed.model)
            completion_id = new_id()
            recording = context.recorder.chat(completion_id, "chat.completion", parsed.messages, parsed.user)
            body = once(lambda response: completion(response, parsed.model, completion_id))
            ended = ended_by(recording, body)
            if parsed.stream:
                return context.stream(
                    lambda out: stream(model, parsed, out, completion_id=completion_id, ended=ended),
                    stream_id=completion_id,
                )

            async def whole() -> dict[str, Any]:
                call = model.invoke(parsed.messages, **parsed.params())
                return body(await called(call, ended))

            return context.whole(whole)
        except APIError as exc:
            return error_response(exc)
