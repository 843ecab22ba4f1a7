"""`Session`: conversation state and the models it can call."""

from __future__ import annotations

import uuid

from lionflow.session.services import ServiceRegistry

__all__ = ["Session"]


class Session:
    """Holds the models a conversation uses (`services`), under a stable `id`."""

    def __init__(self, *, id: str | None = None) -> None:
        self.id = id or uuid.uuid4().hex
        self.services = ServiceRegistry()

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, services={self.services.names()!r})"
