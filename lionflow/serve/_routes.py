"""The routes of `create_app()`; imported only once fastapi is known to be installed. Each API
module registers its own routes on the app."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI

from lionflow.serve import _chat_completions
from lionflow.serve._auth import KeyCheck
from lionflow.serve._context import ServeContext
from lionflow.services.imodel import iModel


def build(
    served: dict[str, iModel], *, max_body_bytes: int, ping_interval: float, api_keys: list[str] | None
) -> FastAPI:
    """The app serving `served` (models by the name clients call them)."""
    app = FastAPI(title="lionflow", docs_url=None, redoc_url=None)
    if api_keys is not None:
        app.add_middleware(KeyCheck, keys=api_keys)
    app.state.model_names = list(served)
    context = ServeContext(models=served, max_body_bytes=max_body_bytes, ping_interval=ping_interval)

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
    return app
