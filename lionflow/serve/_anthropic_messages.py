"""``POST /v1/messages``: the Anthropic Messages API over any lionflow model.

The request's messages become lionflow's chat-dict form (see `_anthropic_messages_request`), so
that any provider can answer them; the chunks come back as the named events the ``anthropic`` SDK
reads (``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``). Choices made
here:

- ``message_start`` goes out with the first chunk (so that a failure before it is an HTTP status);
  its usage is zeros, since lionflow learns the counts at the end: ``message_delta`` carries them
  all, input tokens too, as the API's own cumulative counts do.
- ``input_tokens`` is Anthropic's: the prompt without cache reads (``cache_read_input_tokens``)
  and writes; reasoning tokens are ``output_tokens_details.thinking_tokens``.
- ``metadata`` (the end user's id) is passed on only to an Anthropic model: other APIs reject it.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from lionflow.serve._anthropic_messages_request import parse
from lionflow.serve._context import ServeContext
from lionflow.serve._errors import APIError
from lionflow.serve._hub import Ended, called, relay
from lionflow.serve._record import ended_by, once
from lionflow.serve._sse import Failed
from lionflow.services.call import ModelCall
from lionflow.services.chunk import Chunk, Usage
from lionflow.services.response import Response

# lionflow's finish reasons as Anthropic's stop reasons (an error or cancellation ends no answer
# that is sent whole; end_turn is what a client can read such a stop as).
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "refusal": "refusal",
    "content_filter": "refusal",
}
_NATIVE_STOPS = frozenset(
    {
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
        "model_context_window_exceeded",
    }
)
# The error type Anthropic's API gives with each HTTP status (the SDKs read the status; clients
# that only read the body read the type).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


# -- response ---------------------------------------------------------------------------------------


def _usage(usage: Usage | None, metadata: dict[str, Any]) -> dict[str, Any]:
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    creation = int(metadata.get("cache_creation_input_tokens") or 0)
    result: dict[str, Any] = {
        "input_tokens": max(0, usage.input_tokens - usage.cached_tokens - creation),
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": creation,
    }
    if usage.reasoning_tokens:
        result["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return result


def _stop(reason: str | None, metadata: dict[str, Any]) -> tuple[str, str | None]:
    """The stop reason and stop sequence; an Anthropic model's own reason is kept as it was."""
    sequence = metadata.get("stop_sequence")
    native = metadata.get("stop_reason")
    if metadata.get("provider") == "anthropic" and native in _NATIVE_STOPS:
        return native, sequence if isinstance(sequence, str) else None
    if reason == "stop" and isinstance(sequence, str):
        return "stop_sequence", sequence
    return _STOP.get(reason or "stop", "end_turn"), None


def _event(name: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps({"type": name, **payload}, separators=(",", ":"))
    return f"event: {name}\ndata: {data}\n\n".encode()


def error_body(error: APIError) -> dict[str, Any]:
    """Anthropic's error object for `error`."""
    kind = _ERROR_TYPES.get(error.status) or ("api_error" if error.status >= 500 else "invalid_request_error")
    if error.kind == "guardrails_violation":  # (a guard's stop keeps its own type in every API)
        kind = error.kind
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def error_bytes(error: APIError) -> bytes:
    return json.dumps(error_body(error)).encode()


class EventEncoder:
    """Turns one call's chunks into the Messages API's stream events."""

    def __init__(self, model: str, message_id: str) -> None:
        self.id = message_id
        self.model = model
        self._started = False
        self._block = -1  # the index of the last block started
        self._open: tuple[str, str | None] | None = None  # (kind, tool call id) of the open block
        self._tools: dict[str, int] = {}  # tool call id -> its block's index
        self._usage: Usage | None = None
        self._finish: Chunk | None = None

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _event("message_start", {"message": message})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"index": self._block})

    def _begin(self, key: tuple[str, str | None], block: dict[str, Any]) -> bytes:
        """The events that make `key` the open block (starting it when it is not)."""
        if self._open == key:
            return b""
        events = self._start() + self._close()
        self._block += 1
        self._open = key
        return events + _event("content_block_start", {"index": self._block, "content_block": block})

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> bytes:
        return _event(
            "content_block_delta", {"index": self._block if index is None else index, "delta": delta}
        )

    def encode(self, chunk: Chunk) -> bytes:
        """The events for `chunk` (none for usage and finish: they go in `end`)."""
        kind = chunk.type
        if kind in ("text", "refusal"):  # Anthropic's refusal is text, with stop_reason "refusal"
            start = self._begin(("text", None), {"type": "text", "text": ""})
            return start + self._delta({"type": "text_delta", "text": chunk.data})
        if kind == "reasoning":
            start = self._begin(("thinking", None), {"type": "thinking", "thinking": "", "signature": ""})
            return start + self._delta({"type": "thinking_delta", "thinking": chunk.data})
        if kind == "tool_call":
            call_id = chunk.tool_call_id or f"toolu_{chunk.index}"
            delta = {"type": "input_json_delta", "partial_json": chunk.data}
            if call_id in self._tools and self._open != ("tool_use", call_id):
                # A fragment of a call whose block was closed by another call's (interleaved
                # parallel calls): Anthropic's blocks do not reopen; the SDKs add it by index.
                return self._delta(delta, self._tools[call_id]) if chunk.data else b""
            block = {"type": "tool_use", "id": call_id, "name": chunk.tool_name or "", "input": {}}
            start = self._begin(("tool_use", call_id), block)
            self._tools[call_id] = self._block
            return start + (self._delta(delta) if chunk.data else b"")
        if kind == "usage":
            self._usage = chunk.usage
        else:
            self._finish = chunk
        return b""

    def end(self) -> bytes:
        """The events that close a whole answer: the open block, the stop reason and usage, the end."""
        metadata = self._finish.metadata if self._finish is not None else {}
        reason, sequence = _stop(self._finish.finish_reason if self._finish else None, metadata)
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        usage = _usage(self._usage, metadata)
        closing = _event("message_delta", {"delta": delta, "usage": usage}) + _event("message_stop", {})
        return self._start() + self._close() + closing

    @staticmethod
    def error(error: APIError) -> bytes:
        """An error after the stream began: an ``error`` event, after which the stream ends."""
        return _event("error", {"error": error_body(error)["error"]})


def message(response: Response, model: str, message_id: str) -> dict[str, Any]:
    """The ``message`` object of a whole answer."""
    content: list[dict[str, Any]] = []
    if response.reasoning:
        content.append({"type": "thinking", "thinking": response.reasoning, "signature": ""})
    content += [{"type": "text", "text": text} for text in (response.text, response.refusal) if text]
    content += [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in response.tool_calls
    ]
    reason, sequence = _stop(response.finish_reason, response.metadata)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": _usage(response.usage, response.metadata),
    }


class Sink(Protocol):
    """Where `stream` sends its events (whole SSE events, or one `Failed`)."""

    async def send(self, item: bytes | Failed, /) -> None: ...


async def stream(
    call: Callable[[], ModelCall[Any]], encoder: EventEncoder, out: Sink, ended: Ended | None
) -> None:
    """Produce the event stream of `call` (see `lionflow.serve._hub.relay`), with errors in
    Anthropic's shape."""
    await relay(call, encoder, out, error_body=error_bytes, ended=ended)


def register(app: FastAPI, context: ServeContext) -> None:
    """``POST /v1/messages`` on `app`."""

    @app.post("/v1/messages", response_model=None)
    async def messages(request: Request) -> Any:
        try:
            parsed = parse(await context.read_body(request))
            model = context.model(parsed.model)
            chat, params = parsed.chat_messages(), parsed.params(model)
            message_id = f"msg_{uuid.uuid4().hex}"
            user = (parsed.metadata or {}).get("user_id")
            recording = context.recorder.chat(
                message_id, "message", chat, user if isinstance(user, str) else None
            )
            body = once(lambda response: message(response, parsed.model, message_id))
            ended = ended_by(recording, body)
            if parsed.stream:
                encoder = EventEncoder(parsed.model, message_id)
                call = functools.partial(model.stream, chat, **params)
                return context.stream(lambda out: stream(call, encoder, out, ended), stream_id=message_id)

            async def whole() -> dict[str, Any]:
                return body(await called(model.invoke(chat, **params), ended))

            return context.whole(whole, error_body=error_bytes)
        except APIError as exc:
            return JSONResponse(error_body(exc), status_code=exc.status, headers=exc.headers)
