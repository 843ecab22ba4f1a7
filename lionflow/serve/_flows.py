"""``POST /v1/flows/{name}/runs``: a workflow of the server's, run over HTTP and streamed as SSE.

`create_app(flows={"name": build})` names the flows a client may run; ``build(session) -> Builder``
builds one on a new `Session` per run (on the app's store, so a run is recorded as its session), with
the served models registered under the names clients call them. The request's ``inputs`` reach the
build as ``session.metadata["inputs"]``. The run streams what `flow_stream` yields, as events:

- ``run.started``: ``run_id``, ``session_id``, ``flow``; first.
- ``operation.started``, ``operation.chunk`` (``chunk``: the `Chunk` as JSON, fields at their
  defaults left out but ``type`` and ``data``), then one of ``operation.completed`` (``result``: a
  `Response` as JSON, or what the step returned), ``operation.failed`` (``error``: its ``type`` and
  ``message``), ``operation.skipped`` (a dependency did not complete) or ``operation.cancelled``;
  each with ``run_id``, ``operation`` (its id) and ``name``.
- last, ``run.completed`` (the flow ended as `flow()` returns), ``run.failed`` (as `flow()` raises:
  ``error``) or ``run.cancelled`` (no client was left to follow it), with the ids of the operations
  by outcome (``completed``, ``failed``, ``skipped``, ``cancelled``).

The run is a stream of the server's hub, resumable by its id (``GET /v1/flows/runs/{run_id}`` with
``Last-Event-ID``): a client that leaves cancels it (after the app's `resume_grace`), and every turn
cut short is recorded as incomplete.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_jsonable_python

from lionflow.errors import ConfigurationError, FlowError, FlowValidationError
from lionflow.operations import Builder, FlowEvent, FlowResults, FlowStream, flow_stream
from lionflow.serve._context import ServeContext, error_response
from lionflow.serve._errors import APIError, from_validation
from lionflow.serve._hub import EventSink
from lionflow.services.chunk import Chunk
from lionflow.session.session import Session

_log = logging.getLogger("lionflow.serve")
RUN_PREFIX = "run_"


class RunRequest(BaseModel):
    """The body of ``POST /v1/flows/{name}/runs`` (all optional; an empty body runs the flow as is)."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = Field(default_factory=dict)
    max_concurrent: int | None = Field(default=None, ge=1)
    on_error: Literal["fail_fast", "continue"] = "fail_fast"


def parse(body: bytes) -> RunRequest:
    """The request, or an `APIError` (400) naming the field that is wrong."""
    try:
        return RunRequest.model_validate_json(body if body.strip() else b"{}")
    except ValidationError as exc:
        raise from_validation(exc) from None


def _event(name: str, fields: dict[str, Any]) -> bytes:
    data = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return b"event: " + name.encode() + b"\ndata: " + data.encode() + b"\n\n"


def _json(value: Any) -> Any:
    # A step may return anything: what JSON cannot hold goes as its str().
    return to_jsonable_python(value, fallback=str)


def _chunk(chunk: Chunk) -> dict[str, Any]:
    # Defaults left out (the per-chunk path stays small); Chunk.model_validate() reads it back.
    fields = chunk.model_dump(mode="json", exclude_defaults=True, fallback=str)
    return {"type": chunk.type, "data": chunk.data, **fields}


def _error(error: BaseException | None) -> dict[str, str]:
    # The type and message only: a traceback goes to the server's log, never to the client.
    if error is None:
        return {"type": "Error", "message": "unknown error"}
    return {"type": type(error).__name__, "message": str(error)}


def _outcomes(results: FlowResults) -> dict[str, list[str]]:
    return {
        "completed": list(results),
        "failed": list(results.failed),
        "skipped": list(results.skipped),
        "cancelled": list(results.cancelled),
    }


class _Run:
    """One run's events, as the hub's producer sends them."""

    def __init__(self, run_id: str, flow: str, session: Session, stream: FlowStream) -> None:
        self.run_id = run_id
        self.flow = flow
        self.session = session
        self.stream = stream
        self.ended: set[str] = set()  # operations whose terminal event was sent
        self.names: dict[str, str] = {}

    def _operation(self, name: str, operation: str, fields: dict[str, Any]) -> bytes:
        tags = {"run_id": self.run_id, "operation": operation, "name": self.names.get(operation, operation)}
        return _event(name, tags | fields)

    def encode(self, operation: str, item: Chunk | FlowEvent) -> bytes:
        if isinstance(item, Chunk):
            return self._operation("operation.chunk", operation, {"chunk": _chunk(item)})
        self.names[operation] = item.operation.name
        fields: dict[str, Any] = {}
        if item.kind in ("completed", "item"):
            fields["result"] = _json(item.result)
        elif item.kind == "failed":
            fields["error"] = _error(item.error)
        if item.kind != "started":
            self.ended.add(operation)
        return self._operation(f"operation.{item.kind}", operation, fields)

    def _end(self, name: str, **fields: Any) -> bytes:
        tags = {"run_id": self.run_id, "session_id": self.session.id}
        return _event(name, tags | fields | _outcomes(self.stream.results))

    async def __call__(self, out: EventSink) -> None:
        await out.send(
            _event("run.started", {"run_id": self.run_id, "session_id": self.session.id, "flow": self.flow})
        )
        failure: Exception | None = None
        try:
            async with self.stream:
                async for operation, item in self.stream:
                    await out.send(self.encode(operation, item))
            await self.session.flush()  # run.completed says the turns are stored
        except anyio.get_cancelled_exc_class():
            # No client is left (the grace is over): the flow has stopped and recorded its partial
            # turns. The log keeps a proper end for anyone resuming it later.
            with anyio.CancelScope(shield=True):
                await out.send(self._cancelled())
            raise
        except FlowError as exc:
            failure = exc
        except Exception as exc:
            _log.error("flow run %s failed", self.run_id, exc_info=exc)
            failure = exc
        if failure is None:
            await out.send(self._end("run.completed"))
        else:
            await out.send(self._end("run.failed", error=_error(failure)))

    def _cancelled(self) -> bytes:
        # The flow was stopped from here, so its own terminal events were not delivered: sent now,
        # so that every operation that was sent at all has exactly one.
        results = self.stream.results
        events = b""
        for operation in [*results.skipped, *results.cancelled]:
            if operation not in self.ended:
                kind = "skipped" if operation in results.skipped else "cancelled"
                events += self._operation(f"operation.{kind}", operation, {})
        return events + self._end("run.cancelled")


def start(context: ServeContext, name: str, body: bytes) -> tuple[str, _Run]:
    """Build the run of flow `name` for `body`: its id and its producer. Every mistake found
    before it runs is an `APIError`: a 404 for an unknown flow, a 400 for a bad body or a flow that
    refuses its inputs (`ConfigurationError`, `FlowValidationError`), a 500 for a build that fails
    otherwise (logged)."""
    build = context.flows.get(name)
    if build is None:
        known = ", ".join(sorted(context.flows)) or "none"
        raise APIError(404, f"the flow {name!r} does not exist here; served: {known}", code="not_found")
    request = parse(body)
    run_id = f"{RUN_PREFIX}{uuid.uuid4().hex}"
    metadata = {"flow": name, "run_id": run_id, "inputs": request.inputs}
    session = Session(store=context.store, metadata=metadata)  # (inputs parsed from JSON are JSON)
    for served, model in context.models.items():
        session.services.register(model, name=served)
    try:
        builder = build(session)
        if not isinstance(builder, Builder) or builder.session is not session:
            raise TypeError(
                f"the build of flow {name!r} must return Builder(session=session) for the session "
                f"it is given, not {builder!r}"
            )
        stream = flow_stream(builder, max_concurrent=request.max_concurrent, on_error=request.on_error)
    except (ConfigurationError, FlowValidationError) as exc:
        # The flow refused what this request asked of it (its inputs): the client's to fix.
        raise APIError(400, f"flow {name!r}: {exc}") from None
    except Exception as exc:
        _log.error("the build of flow %r failed", name, exc_info=exc)
        raise APIError(
            500, f"the flow {name!r} could not be built; see the server's log", kind="server_error"
        ) from None
    return run_id, _Run(run_id, name, session, stream)


def register(app: FastAPI, context: ServeContext) -> None:
    """``GET /v1/flows``, ``POST /v1/flows/{name}/runs`` and ``GET /v1/flows/runs/{run_id}`` on `app`."""

    @app.get("/v1/flows")
    async def list_flows() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "flow"} for name in context.flows]}

    @app.get("/v1/flows/runs/{run_id}", response_model=None)
    async def resume(run_id: str, request: Request) -> Any:
        # A run that lost its client: what came after Last-Event-ID, then what comes live.
        try:
            if not run_id.startswith(RUN_PREFIX):  # the hub also holds other APIs' streams
                raise APIError(404, f"no flow run {run_id[:60]!r} here", code="not_found")
            return await context.resume(run_id, request.headers.get("last-event-id"))
        except APIError as exc:
            return error_response(exc)

    @app.post("/v1/flows/runs/{run_id}/cancel", response_model=None)
    async def cancel(run_id: str) -> Any:
        # Stop a run now, even while the server would let it run on awaiting a reconnect.
        stopped = await context.hub.stop(run_id)
        if stopped is None:
            return error_response(APIError(404, f"no flow run {run_id!r} here", code="not_found"))
        return {"id": run_id, "object": "flow.run.cancel", "cancelled": stopped}

    @app.post("/v1/flows/{name}/runs", response_model=None)
    async def run(name: str, request: Request) -> Any:
        try:
            run_id, producer = start(context, name, await context.read_body(request))
            return context.stream(producer, stream_id=run_id)
        except APIError as exc:
            return error_response(exc)
