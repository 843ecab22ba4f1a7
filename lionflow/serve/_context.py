"""What every API module of the server shares: the served models, reading a request's body within
the limit, and answering with an error or an event stream."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from lionflow.serve._errors import APIError, from_exception
from lionflow.serve._hub import Follow, Hub, Producer
from lionflow.serve._record import Recorder
from lionflow.serve._sse import WholeAnswer
from lionflow.services.imodel import iModel
from lionflow.session.stores.base import SessionStore

if TYPE_CHECKING:
    from lionflow.serve.app import FlowBuild

T = TypeVar("T")
_EVENT_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only, and few enough to be a position


class Streamed(Response):
    """An ASGI app of ours (an `EventStream`, a `WholeAnswer`) as the framework's response type,
    which a route must return."""

    def __init__(self, stream: Follow | WholeAnswer) -> None:
        self.stream = stream
        self.background = None
        self.status_code = 200

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.stream(scope, receive, send)


# Keywords of the SDK methods behind the models (not request fields): a client must not steer the
# server's own call to its provider with them (another model, another key, another URL).
_SDK_CONTROLS = frozenset(
    {"timeout", "http_options", "api_key", "base_url", "default_headers", "organization", "project", "betas"}
)


def client_params(extra: dict[str, Any]) -> dict[str, Any]:
    """The fields of a request that the server does not name, as model parameters: refused (400)
    where they would control the SDK call rather than the model (``extra_body``, ``extra_headers``,
    ``timeout``, ...)."""
    for name in extra:
        if name in _SDK_CONTROLS or name.startswith("extra_"):
            raise APIError(400, f"{name!r} is not a request field this server accepts", param=name)
    return {name: value for name, value in extra.items() if value is not None}


@dataclass(frozen=True)
class ServeContext:
    """The server's settings, as each API module's routes read them."""

    models: dict[str, iModel]
    max_body_bytes: int
    hub: Hub
    flows: dict[str, FlowBuild] = field(default_factory=dict)
    store: SessionStore | None = None
    recorder: Recorder = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "recorder", Recorder(self.store))

    async def read_body(self, request: Request) -> bytes:
        """The body, or a 413 `APIError` as soon as it is known to be over `max_body_bytes`."""
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise APIError(413, f"the request body is over {limit} bytes")
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > limit:
                raise APIError(413, f"the request body is over {limit} bytes")
        return bytes(body)

    def model(self, name: str) -> iModel:
        """The model served as `name`, or a 404 `APIError` listing those served."""
        model = self.models.get(name)
        if model is None:
            known = ", ".join(sorted(self.models))
            message = f"the model {name!r} does not exist here; served: {known}"
            raise APIError(404, message, param="model", code="model_not_found")
        return model

    def stream(
        self, producer: Producer, *, stream_id: str | None = None, background: bool = False
    ) -> Streamed:
        """An event-stream response of what `producer` sends, run as a server task under
        `stream_id` (resumable by it; see `lionflow.serve._hub`); a `background` one runs on
        when its client goes away."""
        log = self.hub.start(stream_id or uuid.uuid4().hex, producer, background=background)
        return Streamed(self.hub.follow(log))

    async def resume(self, stream_id: str, last_event_id: str | None) -> Streamed:
        """The stream `stream_id` after event `last_event_id` (all of it when None), then live; a
        404 `APIError` when the server has no such stream (never, or no longer)."""
        log = await self.hub.find(stream_id)
        if log is None:
            message = f"no stream {stream_id!r} to resume here (unknown, or expired)"
            raise APIError(404, message, code="not_found")
        after = 0
        if last_event_id:
            if _EVENT_ID.fullmatch(last_event_id.strip()) is None:
                message = f"Last-Event-ID must be an event id of this stream, not {last_event_id[:40]!r}"
                raise APIError(400, message, param="Last-Event-ID")
            after = int(last_event_id)
        return Streamed(self.hub.follow(log, after=after, joined=False))

    def whole(
        self,
        work: Callable[[], Awaitable[Any]],
        *,
        error_body: Callable[[APIError], bytes] = APIError.body_bytes,
    ) -> Streamed:
        """A JSON response of what `work()` returns, cancelled if the client goes away first; an
        error it raises is answered as `from_exception` says, its body by `error_body`."""

        async def answer() -> tuple[int, bytes, dict[str, str]]:
            try:
                return 200, json.dumps(await answered(work)).encode(), {}
            except APIError as exc:
                return exc.status, error_body(exc), exc.headers

        return Streamed(WholeAnswer(answer))


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def answered(work: Callable[[], Awaitable[T]]) -> T:
    """What `work()` gives; an exception it raises (checking its arguments, or later) becomes the
    `APIError` it is."""
    try:
        return await work()
    except APIError:
        raise
    except Exception as exc:  # (a cancellation is not an Exception: it passes)
        raise from_exception(exc) from exc
