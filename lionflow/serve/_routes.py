"""The routes of `create_app()`; imported only once fastapi is known to be installed."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from lionflow.serve import _chat_completions as chat
from lionflow.serve._errors import APIError, from_exception
from lionflow.serve._sse import EventStream
from lionflow.services.imodel import iModel


class Streamed(Response):
    """An `EventStream` as the framework's response type, which a route must return."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.background = None
        self.status_code = 200

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.stream(scope, receive, send)


def _error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def build(served: dict[str, iModel], *, max_body_bytes: int, ping_interval: float) -> FastAPI:
    """The app serving `served` (models by the name clients call them)."""
    app = FastAPI(title="lionflow", docs_url=None, redoc_url=None)
    app.state.model_names = list(served)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise APIError(413, f"the request body is over {max_body_bytes} bytes")
        body = b""
        async for piece in request.stream():
            body += piece
            if len(body) > max_body_bytes:
                raise APIError(413, f"the request body is over {max_body_bytes} bytes")
        return body

    def model_named(name: str) -> iModel:
        model = served.get(name)
        if model is None:
            known = ", ".join(sorted(served))
            raise APIError(
                404,
                f"the model {name!r} does not exist here; served: {known}",
                param="model",
                code="model_not_found",
            )
        return model

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        created = int(time.time())
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": model.provider}
            for name, model in served.items()
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Any:
        try:
            parsed = chat.parse(await read_body(request))
            model = model_named(parsed.model)
            if parsed.stream:
                return Streamed(
                    EventStream(lambda out: chat.stream(model, parsed, out), ping_interval=ping_interval)
                )
            try:
                response = await model.invoke(parsed.messages, **parsed.params())
            except Exception as exc:  # (a cancellation is not an Exception: it passes)
                raise from_exception(exc) from exc
            return chat.completion(response, parsed.model)
        except APIError as exc:
            return _error_response(exc)

    return app
