"""The routes of `create_app()`; imported only once fastapi is known to be installed. Each API
module registers its own routes on the app."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lionflow.serve import _anthropic_messages, _browse, _chat_completions, _flows, _playground, _responses
from lionflow.serve._auth import Gate, RateLimit
from lionflow.serve._context import ServeContext
from lionflow.serve._errors import APIError
from lionflow.serve._hub import Hub
from lionflow.services.imodel import iModel
from lionflow.session.stores.base import SessionStore

if TYPE_CHECKING:
    from lionflow.serve.app import FlowBuild


def build(
    served: dict[str, iModel],
    *,
    flows: dict[str, FlowBuild],
    store: SessionStore | None,
    max_body_bytes: int,
    ping_interval: float,
    api_keys: list[str] | None,
    rate_limit: RateLimit | None,
    resume_grace: float,
    resume_ttl: float,
) -> FastAPI:
    """The app serving `served` (models by the name clients call them)."""
    hub = Hub(resume_grace=resume_grace, ttl=resume_ttl, ping_interval=ping_interval, store=store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with hub.running():
                yield
        finally:
            # The models' clients hold connections made in the server's event loop: only the
            # server can close them, when it stops.
            with anyio.CancelScope(shield=True):
                for model in served.values():
                    await model.aclose()

    app = FastAPI(title="lionflow", docs_url=None, redoc_url=None, lifespan=lifespan)
    if api_keys is not None or rate_limit is not None:
        app.add_middleware(Gate, keys=api_keys, limit=rate_limit)
    app.state.model_names = list(served)
    app.state.hub = hub

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A path or query parameter of the wrong kind: the client's mistake, in the API's shape.
        error = APIError(400, "a parameter of the request is not valid")
        if request.url.path.startswith("/v1/messages"):
            body = {"type": "error", "error": {"type": "invalid_request_error", "message": error.message}}
            return JSONResponse(body, status_code=400)
        return JSONResponse(error.body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # A route or method the server does not have, answered in the shape of the API asked.
        error = APIError(
            exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None
        )
        if request.url.path.startswith("/v1/messages"):
            body = {"type": "error", "error": {"type": "not_found_error", "message": error.message}}
            return JSONResponse(body, status_code=exc.status_code)
        return JSONResponse(error.body(), status_code=exc.status_code)

    context = ServeContext(models=served, max_body_bytes=max_body_bytes, hub=hub, flows=flows, store=store)

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

    _chat_completions.register(app, context)
    _responses.register(app, context)
    _anthropic_messages.register(app, context)
    _flows.register(app, context)
    _browse.register(app, context)
    _playground.register(app, context)
    return app
