"""The stored sessions, to browse (the playground's sessions panel reads them):

- ``GET /v1/sessions``: ``{"object": "list", "data": [...]}``, each session's ``id``, ``name`` (its
  ``metadata["name"]``, or null), ``branches`` (their names), ``messages`` (a count),
  ``created_at`` and ``updated_at`` (ISO 8601); most recently updated first, at most ``?limit=``
  (1 to 1000, default 100).
- ``GET /v1/sessions/{id}``: the session's ``id``, ``name``, ``created_at``, ``metadata`` and
  ``branches``, each a ``name`` and its ``messages`` in order: ``id``, ``role``, ``label`` and
  ``text`` (as ``lionflow sessions show`` prints them), ``model`` (``provider:model`` of an answer,
  else null) and ``incomplete`` (an answer cut short).

A server without a store answers both with a 404 (code ``no_store``); an unknown session is a 404
(code ``session_not_found``). (``GET /v1/flows``, the served flows, is `lionflow.serve._flows`'s.)
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from lionflow.errors import StoreError
from lionflow.serve._context import ServeContext, error_response
from lionflow.serve._errors import APIError
from lionflow.serve._record import store_unavailable
from lionflow.session._transcript import branch_messages, label_and_text, model_name
from lionflow.session.messages import AssistantResponseContent, Message
from lionflow.session.stores.base import SessionSnapshot, SessionStore

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _store(context: ServeContext) -> SessionStore:
    if context.store is None:
        raise APIError(
            404,
            "this server keeps no sessions: start it with --db PATH (create_app(store=...)) to record them",
            code="no_store",
        )
    return context.store


def _limit(value: str | None) -> int:
    # Read here rather than by the framework, so that the error names the parameter and its range.
    if value is None:
        return DEFAULT_LIMIT
    text = value.strip()
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIMIT):
        raise APIError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}", param="limit")
    return int(text)


def _name(metadata: dict[str, Any]) -> str | None:
    name = metadata.get("name")
    return name if isinstance(name, str) else None


def _message(message: Message) -> dict[str, Any]:
    label, text = label_and_text(message)
    content = message.content
    return {
        "id": message.id,
        "role": message.role,
        "label": label,
        "text": text,
        "model": model_name(message),
        "incomplete": isinstance(content, AssistantResponseContent) and content.incomplete,
    }


def _session(snapshot: SessionSnapshot) -> dict[str, Any]:
    return {
        "id": snapshot.id,
        "name": _name(snapshot.metadata),
        "created_at": snapshot.created_at.isoformat(),
        "metadata": snapshot.metadata,
        "branches": [
            {"name": name, "messages": [_message(message) for message in messages]}
            for name, messages in branch_messages(snapshot)
        ],
    }


async def list_sessions(context: ServeContext, limit: str | None) -> dict[str, Any]:
    """The body of ``GET /v1/sessions``; an `APIError` for no store or a bad `limit`."""
    store = _store(context)
    count = _limit(limit)
    try:
        sessions = await store.list_sessions()
    except StoreError:
        raise store_unavailable("list the sessions") from None
    data = [
        {
            "id": info.id,
            "name": _name(info.metadata),
            "branches": info.branch_names,
            "messages": info.message_count,
            "created_at": info.created_at.isoformat(),
            "updated_at": info.updated_at.isoformat(),
        }
        for info in sessions[:count]
    ]
    return {"object": "list", "data": data}


async def show_session(context: ServeContext, session_id: str) -> dict[str, Any]:
    """The body of ``GET /v1/sessions/{id}``; an `APIError` for no store or no such session."""
    store = _store(context)
    try:
        snapshot = await store.load_session(session_id)
    except StoreError:
        raise store_unavailable("read the session") from None
    if snapshot is None:
        raise APIError(404, f"no session {session_id[:80]!r} here", code="session_not_found")
    return _session(snapshot)


def register(app: FastAPI, context: ServeContext) -> None:
    """``GET /v1/sessions`` and ``GET /v1/sessions/{session_id}`` on `app`."""

    @app.get("/v1/sessions", response_model=None)
    async def sessions(limit: str | None = None) -> Any:
        try:
            return await list_sessions(context, limit)
        except APIError as exc:
            return error_response(exc)

    @app.get("/v1/sessions/{session_id:path}", response_model=None)
    async def session(session_id: str) -> Any:
        try:
            return await show_session(context, session_id)
        except APIError as exc:
            return error_response(exc)
