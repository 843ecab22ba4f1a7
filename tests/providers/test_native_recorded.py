"""Every real recording in ../shared/fixtures/sse through both transports: the same chunks (but
``raw_response``, a dict on the native side), the same Response, the same errors, the same request."""

from __future__ import annotations

import pytest

from tests.loopback import LoopbackServer, Reply
from tests.providers.cases import recorded_expectations
from tests.providers.conformance import FIXTURES, body_pieces, recording_names
from tests.providers.native import both

pytestmark = pytest.mark.anyio

EXPECTED = recorded_expectations()

if not FIXTURES.is_dir():  # test_conformance.py fails under CI when they are missing
    pytest.skip(f"recorded provider streams not found at {FIXTURES}", allow_module_level=True)


@pytest.mark.parametrize("name", recording_names())
async def test_recording_is_the_same_through_both_transports(server: LoopbackServer, name: str) -> None:
    expected = EXPECTED[name]
    model = {
        "provider": expected.provider,
        "model": expected.model,
        "endpoint": expected.endpoint,
        "api_key": "test",
        "base_url": server.url + {"openai": "/v1"}.get(expected.provider, ""),
        "max_retries": 0,
        **expected.extra,
    }
    sdk, native = await both(server, lambda: [Reply(pieces=body_pieces(name))], model=model)
    assert sdk.chunks, "the recording made no chunks"
    assert (sdk.error is None) == (expected.error is None)
    assert all(isinstance(raw, dict) for raw in native.raw)


@pytest.mark.parametrize("cut", [1, 7, 64])
@pytest.mark.parametrize("name", ["openai_chat_tool_call_usage", "anthropic_thinking_text", "gemini_text"])
async def test_a_recording_split_anywhere_reads_the_same(server: LoopbackServer, name: str, cut: int) -> None:
    # The socket gives the body in pieces of any size: inside a line, between CR and LF.
    body = b"".join(body_pieces(name))
    pieces = [body[i : i + cut] for i in range(0, len(body), cut)]
    expected = EXPECTED[name]
    model = {
        "provider": expected.provider,
        "model": expected.model,
        "endpoint": expected.endpoint,
        "api_key": "test",
        "base_url": server.url + {"openai": "/v1"}.get(expected.provider, ""),
        "max_retries": 0,
        **expected.extra,
    }
    await both(server, lambda: [Reply(pieces=pieces)], model=model)
