"""`create_app()`: lionflow's models behind an OpenAI-compatible HTTP API (a FastAPI app)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from lionflow.errors import ConfigurationError, MissingDependency
from lionflow.services.imodel import iModel

if TYPE_CHECKING:
    from fastapi import FastAPI

    from lionflow.operations.builder import Builder
    from lionflow.session.session import Session
    from lionflow.session.stores.base import SessionStore

FlowBuild = Callable[["Session"], "Builder"]

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


def _models_by_name(models: Iterable[iModel] | Mapping[str, iModel]) -> dict[str, iModel]:
    items = models.items() if isinstance(models, Mapping) else ((model.name, model) for model in models)
    by_name: dict[str, iModel] = {}
    for name, model in items:
        if not isinstance(model, iModel):
            raise ConfigurationError(f"models must be iModels, not {model!r}")
        if name in by_name:
            raise ConfigurationError(
                f"two models are named {name!r}; give one another name= (iModel(..., name=))"
            )
        by_name[name] = model
    if not by_name:
        raise ConfigurationError("create_app() needs at least one model")
    return by_name


def create_app(
    models: Iterable[iModel] | Mapping[str, iModel],
    *,
    flows: Mapping[str, FlowBuild] | None = None,
    store: SessionStore | None = None,
    api_keys: Iterable[str] | None = None,
    rate_limit: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ping_interval: float = 15.0,
    resume_grace: float = 0.0,
    resume_ttl: float = 600.0,
) -> FastAPI:
    """An ASGI app serving `models` over the OpenAI Chat Completions and Responses APIs and the
    Anthropic Messages API (``/v1/chat/completions``, ``/v1/responses``, ``/v1/messages``,
    ``/v1/models``), with ``/healthz``. Needs the ``server`` extra (fastapi, uvicorn).

    Clients name a model by its `iModel.name` (or its key when `models` is a mapping). Streams are
    server-sent events that ping after `ping_interval` seconds of silence; a client that hangs up
    cancels the model call, and its provider stream is closed. Request bodies over `max_body_bytes`
    get 413. Errors have the OpenAI API's shape.

    Every streamed answer runs as a task of the server and every event has an ``id:``: a client that
    lost its connection resumes with ``GET /v1/chat/completions/{id}`` and ``Last-Event-ID``, and gets
    exactly the events after it, then the live ones. A stream whose client went away is cancelled
    (its provider stream closed) at once, or after `resume_grace` seconds if no one resumed it; a
    finished one can be replayed for `resume_ttl` seconds. The app needs its lifespan run (uvicorn
    does by default); when it stops, it closes the models (their clients' connections belong to
    the server's event loop).

    With a `store` (a `SessionStore` that keeps served streams: `SQLiteStore`), every answer is
    recorded as a session turn, partial ones marked incomplete, and kept under its id (``GET`` of a
    chat completion or response); ``previous_response_id`` continues a stored response's
    conversation (forking its branch when it continues an earlier one), ``background: true``
    responses run on without a client, and streams' events are written there in batches, so they
    resume after a restart, and dropped `resume_ttl` seconds after their last event. The app does
    not close the store. ``GET /v1/sessions`` lists the stored sessions (most recently updated
    first, ``?limit=``) and ``GET /v1/sessions/{id}`` shows one's branches and turns, each message
    labelled as ``lionflow sessions show`` prints it; without a store both are a 404 (``no_store``).

    `flows` maps a name to ``build(session) -> Builder``: ``POST /v1/flows/{name}/runs`` runs it on a
    new session (on `store`), with the served models registered and the request's ``inputs`` in
    ``session.metadata["inputs"]``, streamed as SSE events tagged by operation;
    ``GET /v1/flows/runs/{run_id}`` resumes it; ``GET /v1/flows`` lists them in the order given.
    (``lionflow serve --flow NAME=FILE.py`` serves the ``build`` of a file.)

    `rate_limit` (such as ``"60/minute"``, or ``"10/second;1000/day"``) limits the requests of each
    key (of each client address, without keys): one more is a 429 with ``retry-after``.

    With `api_keys`, every request but ``/healthz`` needs one of them (``Authorization: Bearer`` or
    ``x-api-key``); keys are compared in constant time and never logged. Without, anyone who reaches
    the server may use it: serve it on loopback only (``lionflow serve`` insists).

    ::

        app = create_app([iModel(provider="openai", model="gpt-4o-mini", name="gpt")])
        # uvicorn.run(app, host="127.0.0.1", port=8000), or `lionflow serve`
    """
    try:
        import fastapi  # noqa: F401 - only whether it is installed
    except ImportError as exc:
        raise MissingDependency("server", "fastapi", "server", what="lionflow's server") from exc
    from lionflow.serve._auth import RateLimit
    from lionflow.serve._routes import build

    if store is not None and not store.keeps_served:
        raise ConfigurationError(
            f"{type(store).__name__} keeps no served streams or answers: give a store that does (SQLiteStore)"
        )
    keys = None if api_keys is None else list(api_keys)
    flow_builds = dict(flows or {})
    for name, flow_build in flow_builds.items():
        if not isinstance(name, str) or not name or "/" in name or not callable(flow_build):
            raise ConfigurationError(
                "flows maps a name (text without '/') to build(session) -> Builder, "
                f"not {name!r}: {flow_build!r}"
            )
    if keys is not None and (not keys or not all(isinstance(key, str) and key for key in keys)):
        raise ConfigurationError("api_keys must be a non-empty list of non-empty strings")
    return build(
        _models_by_name(models),
        flows=flow_builds,
        store=store,
        max_body_bytes=max_body_bytes,
        ping_interval=ping_interval,
        api_keys=keys,
        rate_limit=RateLimit(rate_limit) if rate_limit is not None else None,
        resume_grace=resume_grace,
        resume_ttl=resume_ttl,
    )
