"""What the provider tests share: the provider under test (`ProviderCase`), calling it, a dead port,
a port that never answers, and how a user sets an SDK's own timeout.

Each ``test_<api>.py`` declares its provider as a module-level ``CASE``, built from its own wire-format
builders; the `make` fixture (tests/providers/conftest.py) builds iModels of that provider pointed at
the loopback server, and `test_common_behaviour.py` runs the behaviour every adapter shares against
every ``CASE``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lionflow import Chunk, Response, iModel
from tests.loopback import LoopbackServer, Received

HI = [{"role": "user", "content": "hi"}]

Entry = tuple[Any, ...]
"""A request read back as a transcript entry: ``("system", text)``, ``(role, text)``,
``("call", id, name, arguments)`` or ``("result", id, output)``."""


@dataclass(frozen=True)
class SdkErrors:
    """The SDK exceptions an adapter's errors are chained to (their ``__cause__``)."""

    authentication: type[BaseException]  # HTTP 401
    rate_limit: type[BaseException]  # HTTP 429
    server: type[BaseException]  # HTTP 5xx
    connection: type[BaseException]  # nothing listens
    dropped: type[BaseException]  # the connection was lost in the middle of the body


@dataclass(frozen=True)
class ProviderCase:
    """One provider API as the shared tests see it.

    `text_body` is a whole streamed answer of the given text deltas (with usage, finish reason
    "stop"); `cut_body` the same deltas in a body that ends before the provider said why it
    stopped, which the adapter reports with a message matching `cut_message`. `error_body` is the
    JSON an HTTP error of the given status carries.
    """

    id: str
    provider: str
    model: str
    endpoint_name: str  # a name of the endpoint the adapter serves
    key_variables: tuple[str, ...]  # where the key is looked for, in order
    base_url_variable: str  # the adapter's variable for the server's URL (`SdkProvider.base_url_variable`)
    text_body: Callable[..., list[bytes]]
    cut_body: Callable[..., list[bytes]]
    cut_message: str  # a pattern of the error's message when the body is cut
    error_body: Callable[[int, str], dict[str, Any]]
    errors: SdkErrors
    transcript: Callable[[dict[str, Any]], list[Entry]]  # a sent request body, read back
    endpoint: str | None = None
    path: str = ""  # what follows the server's URL in base_url
    key_header: str = "authorization"
    key_prefix: str = "Bearer "
    takes_stop: bool = True  # whether the API has stop sequences at all

    def model_for(self, **kwargs: Any) -> iModel:
        """An iModel of this provider, with nothing given but `kwargs`."""
        defaults = {"provider": self.provider, "model": self.model, "endpoint": self.endpoint}
        return iModel(**(defaults | kwargs))

    def loopback_model(self, server: LoopbackServer, **kwargs: Any) -> iModel:
        """An iModel of this provider that calls `server` with a test key and no retries, unless
        `kwargs` say otherwise."""
        options: dict[str, Any] = {"api_key": "test", "base_url": server.url + self.path, "max_retries": 0}
        return self.model_for(**(options | kwargs))

    def sent_key(self, received: Received) -> str | None:
        """The API key a request carried, as this provider's SDK sends it; None if it carried none."""
        value = received.headers.get(self.key_header, "")
        return value.removeprefix(self.key_prefix) if value.startswith(self.key_prefix) else None


def chat_transcript(body: dict[str, Any]) -> list[Entry]:
    """A Chat Completions request body as a transcript (OpenAI and Groq)."""
    system: list[str] = []
    entries: list[Entry] = []
    for message in body["messages"]:
        role = message["role"]
        if role in ("system", "developer"):
            system.append(message["content"])
        elif role == "tool":
            entries.append(("result", message["tool_call_id"], message["content"]))
        else:
            if message.get("content"):
                entries.append((role, message["content"]))
            for call in message.get("tool_calls") or ():
                function = call["function"]
                entries.append(("call", call["id"], function["name"], json.loads(function["arguments"])))
    return ([("system", "\n\n".join(system))] if system else []) + entries


def openai_error_body(status: int, message: str) -> dict[str, Any]:
    """The body of an HTTP error response from OpenAI's API, or from Groq's, which copies it."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind}}


async def run(
    model: iModel, messages: list[dict[str, Any]] | str = HI, **params: Any
) -> tuple[list[Chunk], Response]:
    """Stream one call to its end (in the context-manager form): its chunks and its Response."""
    async with model.stream(messages, **params) as call:
        chunks = [chunk async for chunk in call]
    assert call.response is not None
    return chunks, call.response


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def unaccepted_port() -> Iterator[int]:
    """A port on 127.0.0.1 that listens but whose queue of connections is full: a client's connect
    hangs there, as it does to a host that drops the packets, until its connect timeout runs out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # fills the queue
            yield port


def sdk_timeout(case: ProviderCase, seconds: float) -> dict[str, Any]:
    """The call parameters that give the SDK's own request a timeout of `seconds`: ``timeout=`` for
    the openai, anthropic and groq SDKs, Gemini's ``http_options`` (in milliseconds)."""
    if case.provider == "gemini":
        from google.genai import types

        return {"http_options": types.HttpOptions(timeout=round(seconds * 1000))}
    return {"timeout": seconds}
