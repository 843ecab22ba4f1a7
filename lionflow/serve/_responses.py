"""``POST /v1/responses``: the OpenAI Responses API over any lionflow model.

The request becomes a lionflow call (see `lionflow.serve._responses_request`); the chunks come back
as the API's typed events, each with a ``sequence_number``: an output item per reasoning (its summary
text), message (``output_text`` and ``refusal`` parts) and function call, then
``response.completed`` (``response.incomplete`` when a limit cut the answer) with the whole Response.

With a store (``create_app(store=...)``), every response is kept unless the request says ``store:
false``: ``GET /v1/responses/{id}`` returns it, ``previous_response_id`` continues its conversation
(see `lionflow.serve._record`), and ``background: true`` runs it to its end without a client
(``POST /v1/responses/{id}/cancel`` stops it). Without one, those are refused with a 4xx naming the
field. ``conversation`` (the Conversations API) is not served.
"""

from __future__ import annotations

import functools
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request

from lionflow.serve._context import ServeContext, error_response
from lionflow.serve._errors import APIError
from lionflow.serve._hub import Ended, EventSink, called, relay
from lionflow.serve._record import ended_by, once
from lionflow.serve._responses_request import ResponsesRequest, parse
from lionflow.services.call import ModelCall
from lionflow.services.chunk import Chunk, Usage
from lionflow.services.response import Response

# Why an answer stopped early, as lionflow's finish reason -> the API's incomplete_details.reason.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


class EventEncoder:
    """Turns one call's chunks into the Responses API's events, keeping the Response they build.

    Each change of kind (reasoning, message, another function call) closes the output item open
    and opens the next, so the events nest as the official client's stream helper requires.
    """

    def __init__(
        self,
        request: ResponsesRequest,
        *,
        response_id: str | None = None,
        stored: bool = False,
        background: bool = False,
    ) -> None:
        self.request = request
        self.id = response_id or new_id()
        self.stored = stored
        self.background = background
        self.created_at = int(time.time())
        self.output: list[dict[str, Any]] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._sequence = 0
        self._started = False
        self._item: dict[str, Any] | None = None  # the output item open now
        self._part: dict[str, Any] | None = None  # the content (or summary) part open in it
        self._calls: dict[str, dict[str, Any]] = {}  # function_call items by call_id
        self._positions: dict[str, int] = {}  # output_index by item id

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return (
            f"event: {kind}\ndata: ".encode() + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
        )

    def _where(self, item: dict[str, Any] | None = None) -> dict[str, Any]:
        item = item or self._item
        assert item is not None
        return {"item_id": item["id"], "output_index": self._positions[item["id"]]}

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        snapshot = self.response("in_progress")
        return self._event("response.created", response=snapshot) + self._event(
            "response.in_progress", response=snapshot
        )

    def response(self, status: str) -> dict[str, Any]:
        """The Response object as it stands (``output`` empty until the answer ended)."""
        request = self.request
        reason = _INCOMPLETE.get(self.finish_reason or "")
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": self.background,
            "error": None,
            "incomplete_details": {"reason": reason} if status == "incomplete" else None,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "model": request.model,
            "output": self.output if status != "in_progress" else [],
            "parallel_tool_calls": True,
            "previous_response_id": request.previous_response_id,
            "reasoning": {"effort": None, "summary": None},
            "store": self.stored,
            "temperature": request.temperature,
            "text": {"format": request.text_format()},
            "tool_choice": request.tool_choice or "auto",
            "tools": request.tools or [],
            "top_p": request.top_p,
            "truncation": "disabled",
            "usage": _usage(self.usage) if status != "in_progress" else None,
            "user": request.user,
            "metadata": request.metadata or {},
        }

    def status(self) -> str:
        return "incomplete" if self.finish_reason in _INCOMPLETE else "completed"

    def final(self, response: Response) -> dict[str, Any]:
        """The Response object once the call ended, however it ended: ``cancelled`` (a background
        response stopped; another one whose client went away is ``incomplete``), ``failed`` with
        the error, or as its stream ended it."""
        self.usage = self.usage or response.usage
        if response.finish_reason == "error" or response.error:
            body = self.response("failed")
            body["error"] = {"code": "server_error", "message": response.error or "the model call failed"}
            return body
        if response.incomplete:
            return self.response("cancelled" if self.background else "incomplete")
        return self.response(self.status())

    def _open(self, item: dict[str, Any]) -> bytes:
        closed = self._close()
        self._item = item
        self._positions[item["id"]] = len(self.output)
        self.output.append(item)
        added = self._event("response.output_item.added", output_index=len(self.output) - 1, item=item)
        return closed + added

    def _close(self) -> bytes:
        item, events = self._item, self._close_part()
        if item is None:
            return events
        if item["type"] == "function_call":
            events += self._event(
                "response.function_call_arguments.done",
                **self._where(),
                name=item["name"],
                arguments=item["arguments"],
            )
        if "status" in item:
            item["status"] = "completed"
        events += self._event(
            "response.output_item.done", output_index=self._positions[item["id"]], item=item
        )
        self._item = None
        return events

    def _close_part(self) -> bytes:
        part, item = self._part, self._item
        if part is None or item is None:
            return b""
        self._part = None
        if item["type"] == "reasoning":
            where = {**self._where(), "summary_index": len(item["summary"]) - 1}
            done = self._event("response.reasoning_summary_text.done", **where, text=part["text"])
            return done + self._event("response.reasoning_summary_part.done", **where, part=part)
        where = {**self._where(), "content_index": len(item["content"]) - 1}
        if part["type"] == "refusal":
            done = self._event("response.refusal.done", **where, refusal=part["refusal"])
        else:
            done = self._event("response.output_text.done", **where, text=part["text"], logprobs=[])
        return done + self._event("response.content_part.done", **where, part=part)

    def _reasoning(self, delta: str) -> bytes:
        events = b""
        if self._item is None or self._item["type"] != "reasoning":
            events += self._open({"id": f"rs_{uuid.uuid4().hex}", "type": "reasoning", "summary": []})
        assert self._item is not None
        where = {**self._where(), "summary_index": 0}
        if self._part is None:
            self._part = {"type": "summary_text", "text": ""}
            self._item["summary"].append(self._part)
            events += self._event("response.reasoning_summary_part.added", **where, part=self._part)
        self._part["text"] += delta
        return events + self._event("response.reasoning_summary_text.delta", **where, delta=delta)

    def _content(self, kind: str, delta: str) -> bytes:
        events = b""
        if self._item is None or self._item["type"] != "message":
            item = {"id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant"}
            events += self._open(item | {"status": "in_progress", "content": []})
        assert self._item is not None
        field = "refusal" if kind == "refusal" else "text"
        if self._part is None or self._part["type"] != ("refusal" if kind == "refusal" else "output_text"):
            events += self._close_part()
            fresh: dict[str, Any] = {"type": "refusal", "refusal": ""}
            if kind != "refusal":
                fresh = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            self._part = fresh
            self._item["content"].append(fresh)
            where = {**self._where(), "content_index": len(self._item["content"]) - 1}
            events += self._event("response.content_part.added", **where, part=fresh)
        self._part[field] += delta
        where = {**self._where(), "content_index": len(self._item["content"]) - 1}
        if kind == "refusal":
            return events + self._event("response.refusal.delta", **where, delta=delta)
        return events + self._event("response.output_text.delta", **where, delta=delta, logprobs=[])

    def _tool_call(self, chunk: Chunk) -> bytes:
        call_id = chunk.tool_call_id or ""
        item = self._calls.get(call_id)
        events = b""
        if item is None:
            item = {"id": f"fc_{uuid.uuid4().hex}", "type": "function_call", "status": "in_progress"}
            item |= {"call_id": call_id, "name": chunk.tool_name or "", "arguments": ""}
            self._calls[call_id] = item
            events += self._open(item)
        item["arguments"] += chunk.data
        if not chunk.data:
            return events
        return events + self._event(
            "response.function_call_arguments.delta", **self._where(item), delta=chunk.data
        )

    def encode(self, chunk: Chunk) -> bytes:
        """The events for `chunk`; the first chunk's begin with ``response.created``."""
        events = self._start()
        kind = chunk.type
        if kind == "text" or kind == "refusal":
            return events + (self._content(kind, chunk.data) if chunk.data else b"")
        if kind == "reasoning":
            return events + (self._reasoning(chunk.data) if chunk.data else b"")
        if kind == "tool_call":
            return events + self._tool_call(chunk)
        if kind == "usage":
            self.usage = chunk.usage
        else:
            self.finish_reason = chunk.finish_reason
        return events

    def end(self) -> bytes:
        """Closes the item open, then ``response.completed`` (or ``.incomplete``) with the Response."""
        events = self._start() + self._close()
        status = self.status()
        return events + self._event(f"response.{status}", response=self.response(status))

    def error(self, error: APIError) -> bytes:
        """An error after the stream began: an ``error`` event, which ends the stream."""
        # The fields as documented, and nested under "error" too: the official client raises only
        # for that form (the one OpenAI's own server sends), instead of handing the event on.
        fields = {"code": error.code or error.kind, "message": error.message, "param": error.param}
        return self._event("error", **fields, error=error.body()["error"])


def whole(response: Response, encoder: EventEncoder) -> dict[str, Any]:
    """The Response object of a whole answer (built by `encoder`, as its stream would have)."""
    chunks = [Chunk(type="reasoning", data=response.reasoning), Chunk(type="text", data=response.text)]
    chunks.append(Chunk(type="refusal", data=response.refusal))
    for call in response.tool_calls:
        arguments = call.raw_arguments or json.dumps(call.arguments)
        chunks.append(Chunk(type="tool_call", data=arguments, tool_call_id=call.id, tool_name=call.name))
    chunks.append(Chunk(type="finish", finish_reason=response.finish_reason or "stop"))
    for chunk in chunks:
        encoder.encode(chunk)
    encoder.usage = response.usage
    encoder.end()
    return encoder.final(response)


def new_id() -> str:
    """A response's id (also its stream's, for resuming)."""
    return f"resp_{uuid.uuid4().hex}"


async def stream(
    call: Callable[[], ModelCall[Any]], encoder: EventEncoder, out: EventSink, ended: Ended | None
) -> None:
    """Produce the event stream of `call` (see `lionflow.serve._hub.relay`)."""
    await relay(call, encoder, out, ended=ended)


def register(app: FastAPI, context: ServeContext) -> None:
    """``POST /v1/responses``, ``GET /v1/responses/{id}`` and ``POST /v1/responses/{id}/cancel``."""

    @app.get("/v1/responses/{response_id}", response_model=None)
    async def resume(response_id: str, request: Request) -> Any:
        # The stored response; with stream=true, its stream: the events after `starting_after` (a
        # sequence_number; the event with sequence_number N has the SSE id N + 1) or after
        # Last-Event-ID, then the live ones.
        try:
            query = request.query_params
            stream_flag = query.get("stream", "false").lower()
            if stream_flag not in ("true", "false", "1", "0"):
                raise APIError(400, "stream must be true or false", param="stream")
            if stream_flag in ("false", "0"):
                return await context.recorder.load(response_id, "response")
            last = request.headers.get("last-event-id")
            starting_after = query.get("starting_after")
            if starting_after is not None:
                if not re.fullmatch(r"[0-9]{1,18}", starting_after):
                    message = f"starting_after must be a sequence_number, not {starting_after[:40]!r}"
                    raise APIError(400, message, param="starting_after")
                last = str(int(starting_after) + 1)
            return await context.resume(response_id, last)
        except APIError as exc:
            return error_response(exc)

    @app.post("/v1/responses/{response_id}/cancel", response_model=None)
    async def cancel(response_id: str) -> Any:
        # Only a background response that is running can be stopped; the stored response after.
        try:
            log = context.hub.logs.get(response_id)
            if log is None or not log.background:
                body = await context.recorder.load(response_id, "response")
                if not body.get("background"):
                    raise APIError(400, "only a background response can be cancelled", param="response_id")
                return body
            await context.hub.stop(response_id)  # (the turn is recorded before its log ends)
            return await context.recorder.load(response_id, "response")
        except APIError as exc:
            return error_response(exc)

    @app.post("/v1/responses", response_model=None)
    async def responses(request: Request) -> Any:
        try:
            parsed = parse(await context.read_body(request))
            model = context.model(parsed.model)
            inputs, params = parsed.input_messages(), parsed.params()  # a bad input: 400 before any call
            keep = context.store is not None and parsed.store is not False
            if parsed.background and not keep:
                raise APIError(400, "background: this server stores no responses", param="background")
            response_id = new_id()
            recording, history = await context.recorder.response(
                response_id,
                previous=parsed.previous_response_id,
                instructions=parsed.instructions,
                inputs=inputs,
                keep=keep,
            )
            messages = [*parsed.instruction_messages(), *history, *inputs]
            encoder = EventEncoder(
                parsed, response_id=response_id, stored=keep, background=bool(parsed.background)
            )
            # A stream's encoder has the Response when the stream ends; a whole answer's is made
            # from its Response, once, for the client and the store.
            body = encoder.final if parsed.stream or parsed.background else once(lambda r: whole(r, encoder))
            ended = ended_by(recording, body)
            if recording is not None:
                await recording.started(encoder.response("in_progress"))

            def call() -> ModelCall[Any]:
                return model.stream(messages, **params)

            if parsed.background:
                producer = functools.partial(stream, call, encoder, ended=ended)
                if parsed.stream:
                    return context.stream(producer, stream_id=response_id, background=True)
                context.hub.start(response_id, producer, background=True, followed=False)
                return encoder.response("in_progress")
            if parsed.stream:
                return context.stream(
                    functools.partial(stream, call, encoder, ended=ended), stream_id=response_id
                )

            async def answer() -> dict[str, Any]:
                return body(await called(model.invoke(messages, **params), ended))

            return context.whole(answer)
        except APIError as exc:
            return error_response(exc)
