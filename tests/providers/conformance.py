"""Replaying the real provider recordings of ../shared/fixtures/sse through the official SDKs.

Each adapter's tests declare, in ``tests/providers/recorded_<api>.py``, an ``EXPECTED`` dict from
recording name (file name without ``.sse``) to `Expected`: what the normalized stream of that
recording must be. `test_conformance.py` replays every recording and checks it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lionflow import Chunk, ProviderError, Response, Usage, iModel
from tests.loopback import LoopbackServer, Reply

FIXTURES = Path(
    os.environ.get("LIONFLOW_SSE_FIXTURES", Path(__file__).resolve().parents[3] / "shared/fixtures/sse")
)


@dataclass(frozen=True)
class Expected:
    """What one recording must normalize to. None means "not checked"."""

    provider: str
    model: str
    endpoint: str | None = None
    text: str | None = None
    reasoning: str | None = None
    reasoning_nonempty: bool = False
    refusal: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] | None = None  # (name, arguments), in order
    finish_reason: str | None = None
    native_finish: tuple[str, Any] | None = None  # (metadata key, native value) on the finish chunk
    usage: Usage | None = None
    error: type[ProviderError] | None = None  # raised mid-stream; the partial Response is checked
    extra: dict[str, Any] = field(default_factory=dict)  # more iModel keyword arguments


def recording_names() -> list[str]:
    return sorted(path.stem for path in FIXTURES.glob("*.sse"))


def body_pieces(name: str) -> list[bytes]:
    """The recording's exact bytes, cut after each event so they arrive as a server sends them."""
    body = (FIXTURES / f"{name}.sse").read_bytes()
    separator = b"\r\n\r\n" if b"\r\n\r\n" in body else b"\n\n"
    events = body.split(separator)
    pieces = [event + separator for event in events[:-1]]
    if events[-1]:
        pieces.append(events[-1])
    assert b"".join(pieces) == body
    return pieces


@dataclass
class Replayed:
    chunks: list[Chunk]
    response: Response
    error: ProviderError | None


async def replay(server: LoopbackServer, name: str, expected: Expected) -> Replayed:
    server.add(Reply(pieces=body_pieces(name)))
    base_url = server.url + {"openai": "/v1"}.get(expected.provider, "")
    model = iModel(
        provider=expected.provider,
        model=expected.model,
        endpoint=expected.endpoint,
        api_key="test",
        base_url=base_url,
        max_retries=0,
        **expected.extra,
    )
    chunks: list[Chunk] = []
    error: ProviderError | None = None
    call = model.invoke(messages=[{"role": "user", "content": "hi"}])
    try:
        async for chunk in call:
            chunks.append(chunk)
    except ProviderError as caught:
        error = caught
    finally:
        await model.aclose()
    assert call.response is not None
    return Replayed(chunks=chunks, response=call.response, error=error)
